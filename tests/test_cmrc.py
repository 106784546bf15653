"""CMRC: which clips may be combined, what a combined clip holds, the label-set distribution, seeds."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from inference.cmrc import (
    PAPER_COUNTS,
    NoEligibleLabelSetError,
    build_cmrc_dataset,
    eligible_sources,
    plan_combinations,
)
from inference.data import FEATURE_SETS, AVVPDataset, FeatureStore, LabelSet, collate_items, feature_parts, prior_parts

# weak label set -> number of training clips; min_label_count 50 keeps the first four
TEMPLATES = {(0,): 200, (0, 3): 120, (11, 20): 100, (1,): 60, (24,): 50, (0, 11, 20): 30}
FREQUENT = {(0,): 200, (0, 3): 120, (11, 20): 100, (1,): 60}


def _grid(rng: np.random.Generator, classes) -> np.ndarray:
    grid = np.zeros((10, 25), np.float32)
    for c in classes:
        start = rng.integers(0, 9)
        grid[start:rng.integers(start + 1, 11), c] = 1
    return grid


def make_labels(seed: int = 0, extra_val: int = 20) -> LabelSet:
    """Training clips following TEMPLATES (plus a few rare sets and val clips) with noisy pseudo-labels;
    some clips lack pseudo-labels, are out of taxonomy, or have an empty visual pseudo-label."""
    rng = np.random.default_rng(seed)
    sets = [s for s, n in TEMPLATES.items() for _ in range(n)] + [(5, 6), (7,), (8, 9, 10)] * 3
    splits = ["train"] * len(sets) + ["val"] * extra_val
    sets += [(0,)] * extra_val
    n = len(sets)
    weak = np.zeros((n, 25), np.float32)
    pa = np.zeros((n, 10, 25), np.float32)
    pv = np.zeros((n, 10, 25), np.float32)
    for i, s in enumerate(sets):
        weak[i, list(s)] = 1
        keep_a = [c for c in s if rng.random() < 0.7]
        keep_v = [c for c in s if rng.random() < 0.8] or ([] if rng.random() < 0.3 else [s[0]])
        pa[i], pv[i] = _grid(rng, keep_a), _grid(rng, keep_v)
    has_pseudo = rng.random(n) > 0.05
    pa[~has_pseudo] = 0
    pv[~has_pseudo] = 0
    names = [f"clip{i:05d}xyz_0_10" for i in range(n)]
    return LabelSet(filenames=names, video_ids=[f[:11] for f in names], splits=np.array(splits), weak=weak,
                    pseudo_audio=pa, pseudo_visual=pv, has_pseudo=has_pseudo, out_of_taxonomy=rng.random(n) < 0.05)


@pytest.fixture(scope="module")
def labels() -> LabelSet:
    return make_labels()


def _classes(grid: np.ndarray) -> set[int]:
    return set(np.flatnonzero(grid.max(axis=0) > 0.5).tolist())


def test_only_eligible_training_clips_are_sources(labels):
    train = labels.indices("train")
    pairs = plan_combinations(labels, train, 6000, seed=1)
    assert pairs.shape == (6000, 2) and pairs.dtype == np.int64
    used = np.unique(pairs)
    eligible = set(eligible_sources(labels, train).tolist())
    assert set(used.tolist()) <= eligible
    assert not labels.out_of_taxonomy[used].any() and labels.has_pseudo[used].all()
    assert (labels.pseudo_visual[used].max(axis=(1, 2)) > 0).all()
    assert (labels.splits[used] == "train").all()
    assert (pairs[:, 0] != pairs[:, 1]).all()
    # the excluded kinds exist in the data, so the checks above are not vacuous
    assert labels.out_of_taxonomy[train].any() and (~labels.has_pseudo[train]).any()
    empty_visual = labels.has_pseudo & (labels.pseudo_visual.max(axis=(1, 2)) == 0)
    assert empty_visual[train].any()


def test_combined_label_is_a_frequent_set_and_the_union_of_the_tracks(labels):
    pairs = plan_combinations(labels, labels.indices("train"), 3000, seed=2)
    for v, a in pairs:
        visual, audio = _classes(labels.pseudo_visual[v]), _classes(labels.pseudo_audio[a])
        assert visual and tuple(sorted(visual | audio)) in FREQUENT


def test_label_sets_follow_the_training_distribution(labels):
    count = 20000
    pairs = plan_combinations(labels, labels.indices("train"), count, seed=3)
    seen = Counter(tuple(sorted(_classes(labels.pseudo_visual[v]) | _classes(labels.pseudo_audio[a])))
                   for v, a in pairs)
    assert set(seen) == set(FREQUENT)  # (24,) is seen exactly 50 times: "more than 50" leaves it out
    total = sum(FREQUENT.values())
    chi2 = sum((seen[s] - count * n / total) ** 2 / (count * n / total) for s, n in FREQUENT.items())
    assert chi2 < 21.1  # 99.99th percentile of chi-square with 3 degrees of freedom


def test_threshold_is_a_parameter_and_failure_is_clear(labels):
    train = labels.indices("train")
    low = plan_combinations(labels, train, 4000, seed=4, min_label_count=20)
    sets = {tuple(sorted(_classes(labels.pseudo_visual[v]) | _classes(labels.pseudo_audio[a]))) for v, a in low}
    assert {(24,), (0, 11, 20)} <= sets and (5, 6) not in sets
    with pytest.raises(NoEligibleLabelSetError, match="more than 500 times"):
        plan_combinations(labels, train, 10, seed=0, min_label_count=500)
    nothing = make_labels()
    nothing.has_pseudo[:] = False  # frequent sets exist, but no clip may lend a track
    with pytest.raises(NoEligibleLabelSetError, match="from the 0 eligible source clips"):
        plan_combinations(nothing, nothing.indices("train"), 10, seed=0)
    # frequent sets that no eligible pair can form are not drawn: only out-of-taxonomy (1,) clips left
    hidden = make_labels()
    hidden.out_of_taxonomy[np.flatnonzero(hidden.weak[:, 1] > 0)] = True
    only = plan_combinations(hidden, hidden.indices("train"), 2000, seed=0)
    assert not any(1 in _classes(hidden.pseudo_visual[v]) | _classes(hidden.pseudo_audio[a]) for v, a in only)
    assert plan_combinations(labels, train, 0, seed=0).shape == (0, 2)
    assert PAPER_COUNTS == (1585, 3242, 4610, 6080, 12096)


def test_same_seed_same_plan(labels):
    train = labels.indices("train")
    a = plan_combinations(labels, train, 1585, seed=7)
    assert np.array_equal(a, plan_combinations(labels, train, 1585, seed=7))
    assert not np.array_equal(a, plan_combinations(labels, train, 1585, seed=8))


def test_dataset_items_come_from_the_right_clips(tmp_path):
    labels = make_labels(seed=5, extra_val=0)
    keep = np.arange(0, len(labels), 12)  # a small training set: 55 clips
    parts = {**feature_parts("clip_clap", FEATURE_SETS["clip_clap"].shapes), **prior_parts()}
    rng = np.random.default_rng(0)
    for part in parts.values():
        (tmp_path / part.folder).mkdir(parents=True)
        for i in keep:
            data = rng.normal(size=part.shape).astype(np.float32) if part.kinds == "f" else \
                (rng.random(part.shape) < 0.1).astype(np.int64)
            np.save(tmp_path / part.folder / f"{labels.video_ids[i]}.npy", data)
    base = AVVPDataset(labels, FeatureStore(tmp_path, parts), keep)
    combined = build_cmrc_dataset(base, count=40, seed=0, min_label_count=3)
    assert len(combined) == 40 and set(np.unique(combined.pairs)) <= set(keep.tolist())
    for k in range(len(combined)):
        v, a = (int(x) for x in combined.pairs[k])
        item, own_v, own_a = combined[k], base.item(v), base.item(a)
        assert v != a
        assert torch.equal(item["visual"], own_v["visual"]) and torch.equal(item["audio"], own_a["audio"])
        assert torch.equal(item["prior_visual"], own_v["prior_visual"])  # each prior follows its track
        assert torch.equal(item["prior_audio"], own_a["prior_audio"])
        assert torch.equal(item["pseudo_visual"], own_v["pseudo_visual"])
        assert torch.equal(item["pseudo_audio"], own_a["pseudo_audio"])
        union = torch.maximum(own_a["pseudo_audio"].amax(0), own_v["pseudo_visual"].amax(0))
        assert torch.equal(item["label"], union) and item["label"].sum() > 0
        assert set(item) == set(own_v)
    loader = DataLoader(ConcatDataset([base, combined]), batch_size=16, shuffle=True, collate_fn=collate_items,
                        generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch["audio"].shape == (16, 10, 512) and batch["label"].shape == (16, 25)
