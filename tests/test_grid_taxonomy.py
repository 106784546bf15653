from __future__ import annotations

import numpy as np
import pytest

from annotation.clipname import ClipNameError, parse_clip_name
from annotation.grid import (
    as_grid, batch_intervals, from_pseudo_layout, grid_from_intervals, grid_to_intervals, pack, runs,
    to_pseudo_layout, unpack, weak_grid,
)
from annotation.taxonomy import CLASSES, COLOURS, DISPLAY_NAMES, UnknownClassError, format_label_list, parse_label_list


def test_taxonomy_canonical_order():
    assert len(CLASSES) == len(DISPLAY_NAMES) == len(COLOURS) == 25 == len(set(COLOURS))
    assert CLASSES[0] == "Speech" and CLASSES[5] == "Frying_(food)" and CLASSES[24] == "Clapping"
    assert parse_label_list("Clapping,Clapping") == [24]
    assert parse_label_list("Dog,Speech") == [0, 3]
    assert format_label_list([3, 0]) == "Speech,Dog"
    with pytest.raises(UnknownClassError, match="'Doge'"):
        parse_label_list("Speech,Doge")


@pytest.mark.parametrize("name,vid,start,end", [
    ("BjCEufrlXm4_20_30", "BjCEufrlXm4", 20, 30),
    ("AP0061o0Nvk_101.8_111.8", "AP0061o0Nvk", 101.8, 111.8),
    ("-_-_abc_123_0_10", "-_-_abc_123", 0, 10),
])
def test_clip_names(name, vid, start, end):
    parsed = parse_clip_name(name)
    assert (parsed.video_id, parsed.start, parsed.end) == (vid, start, end)


@pytest.mark.parametrize("bad", ["P7x4FV4lg_570_580", "abcdefghijk_1", "abcdefghijk_a_b", ""])
def test_bad_clip_names(bad):
    with pytest.raises(ClipNameError, match="11-char"):
        parse_clip_name(bad)


def test_intervals_round_trip_and_quirks():
    grid = grid_from_intervals([(0, 0, 4), (0, 4, 6), (3, 9, 0), (24, 2, 5), (24, 2, 5), (1, 9, 10)])
    assert grid[0].tolist() == [1] * 6 + [0] * 4 and grid[3].sum() == 0
    assert grid_to_intervals(grid) == [(0, 0, 6), (1, 9, 10), (24, 2, 5)]
    assert (grid_from_intervals(grid_to_intervals(grid)) == grid).all()


def test_batch_intervals_matches_per_row_runs():
    rng = np.random.default_rng(0)
    grids = (rng.random((300, 25, 10)) < rng.random((300, 1, 1))).astype(np.uint8)
    expected = [(v, c, a, b) for v in range(300) for c in range(25) for a, b in runs(grids[v, c])]
    assert [tuple(r) for r in batch_intervals(grids).tolist()] == expected


def test_pack_and_layouts():
    rng = np.random.default_rng(1)
    grid = (rng.random((25, 10)) < 0.3).astype(np.uint8)
    assert len(pack(grid)) == 32 and (unpack(pack(grid)) == grid).all()
    pseudo = to_pseudo_layout(grid)
    assert pseudo.shape == (10, 25) and pseudo.dtype == np.int64
    assert (from_pseudo_layout(pseudo) == grid).all()
    assert weak_grid([0, 3]).sum() == 20
    with pytest.raises(ValueError, match="shape"):
        as_grid(np.zeros((10, 25)))
    with pytest.raises(ValueError, match="0 or 1"):
        as_grid(np.full((25, 10), 2))
