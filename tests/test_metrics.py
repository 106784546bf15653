"""AVVP evaluation: vectorised metrics vs the literal port vs the published oracle values."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from annotation.errors import DataFileError
from annotation.grid import weak_grid
from annotation.llp_csv import dense_grids, read_dense_csv, read_weak_csv, write_dense_csv, write_weak_csv
from app import cmd_eval
from inference import metrics_reference as ref
from inference.metrics import _check_binary, _event_counts  # private: pins event counting
from inference.metrics import (
    binarize,
    evaluate,
    evaluate_csv,
    evaluate_probabilities,
    format_table,
    per_video_scores,
)

KEYS = ("audio", "visual", "audio_visual", "type", "event")


def _level(values) -> dict[str, float]:
    return dict(zip(KEYS, values))


# The doc's oracle table (published evaluation code, current CSVs), given there to 6 decimals.
DOC_ORACLE = {
    ("weak", "test"): {
        "segment": _level((76.117616, 60.347996, 52.610299, 63.025304, 71.725774)),
        "event": _level((63.027249, 55.752712, 44.692063, 54.490675, 61.601091)),
    },
    ("weak", "val"): {
        "segment": _level((77.074772, 58.654129, 52.072682, 62.600528, 71.533565)),
        "event": _level((63.848656, 53.475432, 44.149118, 53.824402, 61.120711)),
    },
}
DOC_DECIMALS_TOL = 5e-7  # half a unit of the 6th decimal

# Exact values. All zeros on test: only videos with empty truth score (1.0):
# audio 6/1200, visual 121/1200, audio-visual 174/1200; Event@AV needs both empty.
_ZERO_A, _ZERO_V, _ZERO_AV = 100 * 6 / 1200, 100 * 121 / 1200, 100 * 174 / 1200
_ZERO_LEVEL = _level((_ZERO_A, _ZERO_V, _ZERO_AV, (_ZERO_A + _ZERO_V + _ZERO_AV) / 3, 0.0))
ZERO_TEST = {"segment": _ZERO_LEVEL, "event": _ZERO_LEVEL}
PERFECT = {"segment": _level([100.0] * 5), "event": _level([100.0] * 5)}

# The weak-label predictor at full precision, as computed by the literal port
# (`metrics_reference`, checked below to reproduce the doc table); pins to 1e-9.
WEAK_FULL = {
    "test": {
        "segment": _level((76.11761574371361, 60.3479958606829, 52.610299248466816, 63.02530361762111,
                           71.72577405196489)),
        "event": _level((63.02724867724868, 55.752711640211636, 44.6920634920635, 54.490674603174604,
                         61.60109126984127)),
    },
    "val": {
        "segment": _level((77.07477217127095, 58.65412944301875, 52.07268236425382, 62.600527992847844,
                           71.53356513640091)),
        "event": _level((63.84865605204587, 53.47543228899161, 44.149118301660664, 53.82440221423271,
                         61.1207107393548)),
    },
}


def assert_scores(actual: dict, expected: dict, tol: float) -> None:
    assert set(actual) == {"segment", "event"}
    for level in ("segment", "event"):
        assert set(actual[level]) == set(KEYS)
        for key in KEYS:
            assert isinstance(actual[level][key], float)
            assert actual[level][key] == pytest.approx(expected[level][key], abs=tol, rel=0), (level, key)


# ---------------------------------------------------------------- real LLP data

class Split:
    def __init__(self, llp_dir: Path, name: str):
        self.videos_csv = llp_dir / f"AVVP_{name}_pd.csv"
        weak = read_weak_csv(self.videos_csv)
        self.filenames = [row.filename for row in weak]
        self.gt_a = dense_grids(read_dense_csv(llp_dir / "AVVP_eval_audio.csv"), self.filenames)
        self.gt_v = dense_grids(read_dense_csv(llp_dir / "AVVP_eval_visual.csv"), self.filenames)
        self.weak = np.stack([weak_grid(row.labels) for row in weak])  # weak label on all 10 segments


@pytest.fixture(scope="module")
def test_split(llp_dir) -> Split:
    return Split(llp_dir, "test")


@pytest.fixture(scope="module")
def val_split(llp_dir) -> Split:
    return Split(llp_dir, "val")


@pytest.fixture(scope="module")
def reference_weak_test(test_split) -> dict:
    """The literal port on the 1,200 test videos, run once (about a second)."""
    s = test_split
    return ref.evaluate_reference(s.weak, s.weak, s.gt_a, s.gt_v)


def test_split_sizes(test_split, val_split):
    assert test_split.weak.shape == (1200, 25, 10)
    assert val_split.weak.shape == (649, 25, 10)


def test_oracle_all_zeros_test(test_split):
    s = test_split
    zeros = np.zeros_like(s.weak)
    assert_scores(evaluate(zeros, zeros, s.gt_a, s.gt_v), ZERO_TEST, 1e-9)


@pytest.mark.parametrize("name", ["test", "val"])
def test_oracle_weak_label_predictor(name, test_split, val_split):
    s = test_split if name == "test" else val_split
    scores = evaluate(s.weak, s.weak, s.gt_a, s.gt_v)
    assert_scores(scores, DOC_ORACLE[("weak", name)], DOC_DECIMALS_TOL)
    assert_scores(scores, WEAK_FULL[name], 1e-9)


@pytest.mark.parametrize("name", ["test", "val"])
def test_oracle_truth_itself(name, test_split, val_split):
    s = test_split if name == "test" else val_split
    assert_scores(evaluate(s.gt_a, s.gt_v, s.gt_a, s.gt_v), PERFECT, 1e-9)


def test_reference_reproduces_oracle_on_test(test_split, reference_weak_test):
    """The check that the literal port is right: it gives the published numbers."""
    assert_scores(reference_weak_test, DOC_ORACLE[("weak", "test")], DOC_DECIMALS_TOL)
    assert_scores(reference_weak_test, WEAK_FULL["test"], 1e-9)
    s = test_split
    zeros = np.zeros_like(s.weak)
    sub = slice(0, 300)  # all-zeros is cheap to check on part of the split too
    assert_scores(
        ref.evaluate_reference(zeros[sub], zeros[sub], s.gt_a[sub], s.gt_v[sub]),
        evaluate(zeros[sub], zeros[sub], s.gt_a[sub], s.gt_v[sub]),
        1e-12,
    )


def test_vectorised_equals_reference_on_test(test_split, reference_weak_test):
    s = test_split
    assert_scores(evaluate(s.weak, s.weak, s.gt_a, s.gt_v), reference_weak_test, 1e-12)


def test_evaluate_csv_weak_predictor(llp_dir, test_split, tmp_path):
    s = test_split
    pred_csv = tmp_path / "pred.csv"
    write_dense_csv(pred_csv, dict(zip(s.filenames, s.weak)))
    scores = evaluate_csv(
        llp_dir / "AVVP_eval_audio.csv", llp_dir / "AVVP_eval_visual.csv", pred_csv, pred_csv, s.videos_csv
    )
    assert_scores(scores, DOC_ORACLE[("weak", "test")], DOC_DECIMALS_TOL)
    assert_scores(scores, WEAK_FULL["test"], 1e-9)


def test_cli_run_json_on_real_data(llp_dir, test_split, tmp_path, capsys):
    s = test_split
    pred_a, pred_v = tmp_path / "pred_a.csv", tmp_path / "pred_v.csv"
    write_dense_csv(pred_a, dict(zip(s.filenames, s.weak)))
    write_dense_csv(pred_v, dict(zip(s.filenames, s.weak)))
    args = _parse([
        "eval", "--gt-audio", str(llp_dir / "AVVP_eval_audio.csv"), "--gt-visual", str(llp_dir / "AVVP_eval_visual.csv"),
        "--pred-audio", str(pred_a), "--pred-visual", str(pred_v), "--videos", str(s.videos_csv), "--json",
    ])
    assert args.func(args) == 0
    assert_scores(json.loads(capsys.readouterr().out), WEAK_FULL["test"], 1e-9)


# ---------------------------------------------------------------- vectorised == reference, synthetic

_PATTERNS = np.array([
    [0] * 10,
    [1] * 10,
    [1, 0] * 5,
    [0, 1] * 5,
    [1, 1, 0, 0, 1, 1, 0, 0, 1, 1],
    [0, 0, 0, 1, 1, 1, 1, 0, 0, 0],
    [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
], dtype=np.uint8)


def _random_grids(rng, videos: int) -> np.ndarray:
    """Per-video densities from empty to full, with some rows replaced by fixed patterns."""
    density = rng.choice([0.0, 0.03, 0.1, 0.3, 0.5, 0.8, 1.0], size=(videos, 1, 1))
    grids = (rng.random((videos, 25, 10)) < density).astype(np.uint8)
    rows = rng.random((videos, 25)) < 0.25
    grids[rows] = _PATTERNS[rng.integers(len(_PATTERNS), size=int(rows.sum()))]
    return grids


def _related(rng, grids: np.ndarray, flip: float) -> np.ndarray:
    """A noisy copy (segments flipped with probability `flip`), so that matches occur."""
    return (grids ^ (rng.random(grids.shape) < flip)).astype(np.uint8)


def _cases():
    rng = np.random.default_rng(20240417)
    cases = []
    for videos, flip in [(1, 0.1), (1, 0.0), (2, 0.5), (40, 0.05), (60, 0.2), (60, None)]:
        gt_a, gt_v = _random_grids(rng, videos), _random_grids(rng, videos)
        if flip is None:
            pred_a, pred_v = _random_grids(rng, videos), _random_grids(rng, videos)
        else:
            pred_a, pred_v = _related(rng, gt_a, flip), _related(rng, gt_v, flip)
        cases.append((pred_a, pred_v, gt_a, gt_v))
    ones = np.ones((3, 25, 10), np.uint8)
    zeros = np.zeros_like(ones)
    alt = np.broadcast_to(_PATTERNS[2], ones.shape).copy()
    shifted = np.broadcast_to(_PATTERNS[3], ones.shape).copy()
    cases += [
        (zeros, zeros, zeros, zeros),
        (ones, ones, zeros, zeros),
        (zeros, zeros, ones, ones),
        (ones, zeros, ones, ones),
        (alt, shifted, alt, alt),
        (alt, alt, ones, shifted),
    ]
    return cases


@pytest.mark.parametrize("case", range(len(_cases())))
def test_vectorised_equals_reference_random(case):
    pred_a, pred_v, gt_a, gt_v = _cases()[case]
    expected = ref.evaluate_reference(pred_a, pred_v, gt_a, gt_v)
    assert_scores(evaluate(pred_a, pred_v, gt_a, gt_v), expected, 1e-12)
    # any int/bool dtype gives the same numbers
    assert_scores(
        evaluate(pred_a.astype(bool), pred_v.astype(np.int64), gt_a.astype(np.int32), gt_v.astype(bool)),
        expected,
        1e-12,
    )


def test_per_video_scores_match_reference():
    pred_a, pred_v, gt_a, gt_v = _cases()[4]
    per_video = per_video_scores(pred_a, pred_v, gt_a, gt_v)
    for k in range(len(pred_a)):
        so_a, so_v, g_a, g_v = pred_a[k].astype(int), pred_v[k].astype(int), gt_a[k].astype(float), gt_v[k].astype(float)
        for level, fn in (("segment", ref.segment_level), ("event", ref.event_level)):
            f_a, f_v, f, f_av = fn(so_a, so_v, so_a * so_v, g_a, g_v, g_a * g_v)
            got = per_video[level]
            assert got["audio"][k] == pytest.approx(f_a, abs=1e-12)
            assert got["visual"][k] == pytest.approx(f_v, abs=1e-12)
            assert got["audio_visual"][k] == pytest.approx(f_av, abs=1e-12)
            assert got["event"][k] == pytest.approx(f, abs=1e-12)
            assert got["type"][k] == pytest.approx((f_a + f_v + f_av) / 3, abs=1e-12)


def _row(bits: str) -> np.ndarray:
    return np.array([int(b) for b in bits])


@pytest.mark.parametrize(
    "pred, gt, counts",
    [
        ("1111000000", "1100000000", (1, 0, 0)),  # IoU exactly 0.5: a match (inclusive)
        ("1111100000", "1100000000", (0, 1, 1)),  # IoU 0.4
        ("1010101010", "1111111111", (0, 5, 1)),
        ("1100110000", "1111110000", (0, 2, 1)),  # each piece IoU 1/3
        ("1110111000", "1111111000", (0, 2, 1)),  # each piece IoU 3/7
        ("1110011100", "1111011110", (2, 0, 0)),  # two events matched one to one
        ("0000000000", "0001100000", (0, 0, 1)),
        ("0000000001", "0000000000", (0, 1, 0)),
    ],
)
def test_event_counts_edge_cases(pred, gt, counts):
    p, g = _row(pred), _row(gt)
    events_p = ref.extract_event(p) if p.sum() else None
    events_g = ref.extract_event(g) if g.sum() else None
    expected = ref.event_wise_metric(events_p, events_g)
    assert expected == counts
    grid_p = np.zeros((1, 25, 10), np.uint8)
    grid_g = np.zeros((1, 25, 10), np.uint8)
    grid_p[0, 7], grid_g[0, 7] = p, g
    tp, fp, fn = _event_counts(_check_binary("p", grid_p), _check_binary("g", grid_g))
    assert (int(tp[0, 7]), int(fp[0, 7]), int(fn[0, 7])) == counts
    assert tp.sum() + fp.sum() + fn.sum() == sum(counts)


def test_extract_event_runs():
    events = ref.extract_event(_row("1101110001"))
    assert [tuple(np.flatnonzero(e)) for e in events] == [(0, 1), (3, 4, 5), (9,)]
    assert ref.extract_event(_row("0000000000")) == []


def test_empty_everything_scores_one():
    zeros = np.zeros((2, 25, 10), np.uint8)
    assert_scores(evaluate(zeros, zeros, zeros, zeros), PERFECT, 0)


# ---------------------------------------------------------------- binarize, validation

def test_binarize_gating_rule():
    seg_a = np.zeros((2, 25, 10))
    seg_v = np.zeros((2, 25, 10))
    glob = np.zeros((2, 25))
    seg_a[0, 3, :5] = 0.5  # inclusive threshold
    seg_a[0, 3, 5:] = 0.49
    glob[0, 3] = 0.5
    seg_v[0, 4, :] = 0.9  # class not predicted for the video: gated out
    glob[0, 4] = 0.4999
    seg_a[1, 0, 2] = seg_v[1, 0, 7] = 1.0
    glob[1, 0] = 0.7
    pred_a, pred_v = binarize(seg_a, seg_v, glob)
    assert pred_a.shape == pred_v.shape == (2, 25, 10)
    assert pred_a.dtype == np.uint8
    expected_a = np.zeros((2, 25, 10), np.uint8)
    expected_a[0, 3, :5] = 1
    expected_a[1, 0, 2] = 1
    expected_v = np.zeros((2, 25, 10), np.uint8)
    expected_v[1, 0, 7] = 1
    np.testing.assert_array_equal(pred_a, expected_a)
    np.testing.assert_array_equal(pred_v, expected_v)
    # a custom threshold applies to both tests
    pred_a, _ = binarize(seg_a, seg_v, glob, threshold=0.45)
    assert pred_a[0, 3].sum() == 10 and pred_a[0, 4].sum() == 0


def test_evaluate_probabilities_is_binarize_then_evaluate():
    rng = np.random.default_rng(3)
    seg_a, seg_v, glob = rng.random((5, 25, 10)), rng.random((5, 25, 10)), rng.random((5, 25))
    gt_a, gt_v = _random_grids(rng, 5), _random_grids(rng, 5)
    pred_a, pred_v = binarize(seg_a, seg_v, glob)
    assert evaluate_probabilities(seg_a, seg_v, glob, gt_a, gt_v) == evaluate(pred_a, pred_v, gt_a, gt_v)


@pytest.mark.parametrize(
    "shapes, match",
    [
        (((5, 10, 25), (5, 10, 25), (5, 25)), "transpose"),
        (((5, 25, 10), (4, 25, 10), (5, 25)), "must match"),
        (((5, 25, 10), (5, 25, 10), (5, 25, 1)), "global_prob"),
        (((25, 10), (25, 10), (25,)), "segment_prob_audio"),
    ],
)
def test_binarize_shape_errors(shapes, match):
    with pytest.raises(ValueError, match=match):
        binarize(*(np.zeros(s) for s in shapes))


def test_evaluate_shape_and_value_errors():
    good = np.zeros((3, 25, 10), np.uint8)
    with pytest.raises(ValueError, match=r"pred_audio must have shape \(videos, 25, 10\)"):
        evaluate(np.zeros((25, 10)), good, good, good)
    with pytest.raises(ValueError, match="gt_visual must have shape"):
        evaluate(good, good, good, np.zeros((3, 10, 25)))
    with pytest.raises(ValueError, match="gt_audio has shape .* one row per video"):
        evaluate(good, good, np.zeros((4, 25, 10)), good)
    with pytest.raises(ValueError, match="no video"):
        evaluate(*(np.zeros((0, 25, 10)),) * 4)
    with pytest.raises(ValueError, match="binarize"):
        evaluate(np.full((3, 25, 10), 0.7), good, good, good)
    with pytest.raises(ValueError, match="only 0 and 1"):
        evaluate(good, np.full((3, 25, 10), 2, np.int64), good, good)
    with pytest.raises(ValueError, match="only 0 and 1"):
        evaluate(good, good, np.full((3, 25, 10), -1, np.int8), good)
    with pytest.raises(ValueError, match="dtype"):
        evaluate(good, good, good, np.full((3, 25, 10), "1"))


def test_format_table():
    scores = {
        "segment": _level((76.117616, 60.347996, 52.610299, 63.025304, 71.725774)),
        "event": _level((100.0, 0.0, 5.555, 54.490675, 61.601091)),
    }
    lines = format_table(scores).splitlines()
    assert len(lines) == 3
    for title in ("audio", "visual", "audio-visual", "Type@AV", "Event@AV"):
        assert title in lines[0]
    assert lines[1].split() == ["segment", "76.12", "60.35", "52.61", "63.03", "71.73"]
    assert lines[2].split()[:3] == ["event", "100.00", "0.00"]
    assert len({len(line) for line in lines}) == 1  # aligned


# ---------------------------------------------------------------- CSV and CLI on synthetic files

def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cmd_eval.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture()
def small_csvs(tmp_path):
    """Three videos; dense rows include an orphan filename, a degenerate and a duplicate row."""
    names = ["aaaaaaaaaaa_0_10", "b_b-b_b_b_b_30_40", "ccccccccccc_5_15"]
    write_weak_csv(tmp_path / "videos.csv", {names[0]: [0], names[1]: [3, 11], names[2]: [24]})
    rng = np.random.default_rng(11)
    gt_a, gt_v = _random_grids(rng, 3), _random_grids(rng, 3)
    pred_a, pred_v = _related(rng, gt_a, 0.2), _related(rng, gt_v, 0.2)
    paths = {}
    for key, grids in (("gt_a", gt_a), ("gt_v", gt_v), ("pred_a", pred_a), ("pred_v", pred_v)):
        paths[key] = tmp_path / f"{key}.csv"
        write_dense_csv(paths[key], dict(zip(names, grids)))
    with open(paths["gt_a"], "a", encoding="utf-8") as handle:
        handle.write("zzzzzzzzzzz_0_10\t0\t10\tSpeech\n")  # orphan: ignored
        handle.write(f"{names[0]}\t9\t0\tDog\n")  # onset >= offset: sets nothing
    with open(paths["pred_v"], "a", encoding="utf-8") as handle:
        handle.write("aaaaaaaaaaa_0_100\t0\t10\tCat\n")  # near-miss filename: ignored
    paths["videos"] = tmp_path / "videos.csv"
    return paths, (pred_a, pred_v, gt_a, gt_v)


def test_evaluate_csv_matches_grids(small_csvs):
    paths, grids = small_csvs
    scores = evaluate_csv(paths["gt_a"], paths["gt_v"], paths["pred_a"], paths["pred_v"], paths["videos"])
    assert_scores(scores, ref.evaluate_reference(*grids), 1e-12)


def test_evaluate_csv_repeated_video_counts_twice(small_csvs, tmp_path):
    paths, (pred_a, pred_v, gt_a, gt_v) = small_csvs
    videos = tmp_path / "repeated.csv"
    videos.write_text(
        "filename\tevent_labels\naaaaaaaaaaa_0_10\tSpeech\nccccccccccc_5_15\tClapping\naaaaaaaaaaa_0_10\tSpeech\n",
        encoding="utf-8",
    )
    order = [0, 2, 0]
    scores = evaluate_csv(paths["gt_a"], paths["gt_v"], paths["pred_a"], paths["pred_v"], videos)
    assert_scores(scores, evaluate(pred_a[order], pred_v[order], gt_a[order], gt_v[order]), 1e-12)


def test_evaluate_csv_video_without_rows_is_all_zero(small_csvs, tmp_path):
    paths, (pred_a, pred_v, gt_a, gt_v) = small_csvs
    videos = tmp_path / "more.csv"
    videos.write_text(
        paths["videos"].read_text(encoding="utf-8") + "ddddddddddd_0_10\tSpeech\n", encoding="utf-8"
    )
    zero = np.zeros((1, 25, 10), np.uint8)
    expected = evaluate(*(np.concatenate([g, zero]) for g in (pred_a, pred_v, gt_a, gt_v)))
    scores = evaluate_csv(paths["gt_a"], paths["gt_v"], paths["pred_a"], paths["pred_v"], videos)
    assert_scores(scores, expected, 1e-12)


def test_cli_run_json_and_table(small_csvs, capsys):
    paths, grids = small_csvs
    argv = [
        "eval", "--gt-audio", str(paths["gt_a"]), "--gt-visual", str(paths["gt_v"]),
        "--pred-audio", str(paths["pred_a"]), "--pred-visual", str(paths["pred_v"]), "--videos", str(paths["videos"]),
    ]
    args = _parse(argv + ["--json"])
    assert args.func is cmd_eval.run
    assert cmd_eval.run(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert_scores(printed, evaluate(*grids), 1e-12)

    assert cmd_eval.run(_parse(argv)) == 0
    assert capsys.readouterr().out == format_table(evaluate(*grids)) + "\n"


def test_cli_requires_all_files():
    with pytest.raises(SystemExit):
        _parse(["eval", "--gt-audio", "a.csv", "--json"])


def test_cli_data_error_propagates(small_csvs, tmp_path):
    paths, _ = small_csvs
    bad = tmp_path / "bad.csv"
    bad.write_text("filename\tonset\toffset\tevent_labels\naaaaaaaaaaa_0_10\t0\t10\tNotAClass\n", encoding="utf-8")
    args = _parse([
        "eval", "--gt-audio", str(paths["gt_a"]), "--gt-visual", str(paths["gt_v"]),
        "--pred-audio", str(bad), "--pred-visual", str(paths["pred_v"]), "--videos", str(paths["videos"]),
    ])
    with pytest.raises(DataFileError, match="bad.csv, line 2"):
        cmd_eval.run(args)
    args.pred_audio = str(tmp_path / "missing.csv")
    with pytest.raises(DataFileError, match="cannot open"):
        cmd_eval.run(args)

