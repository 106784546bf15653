"""CMRC: cross-modal random combination (MUG Sec. 3.2), new training clips from pairs of clips.

A combined clip has the visual features (and motion features) and the visual
segment pseudo-label of one training clip and the audio features and audio
segment pseudo-label of another; its video-level label is the union of the two
pseudo-labels (`AVVPDataset.item(i, audio_from=j)`).

How pairs are drawn (MUG: "we first count the distribution of all video-level
labels that appear more than 50 times in the entire training set. Based on this
distribution, we selectively combine ..."; the supplementary it points to is
not available, so this is our reading):

1. Label sets: the video-level (weak) label of a training clip, as a SET of
   classes ("Speech,Dog"). Count each set over the training clips given;
   the frequent sets are those seen more than `min_label_count` times.
2. Sources: training clips with both pseudo-labels, not reviewed as out of the
   25 classes, and with a non-empty visual pseudo-label (an empty one is an
   unannotated error, MUG's manual-annotation step). An empty AUDIO
   pseudo-label is allowed (a video may be silent), and such a clip can lend
   silence. Excluded clips are never used as either source.
3. For each new clip a target set S is drawn with probability proportional to
   its training count, then a (visual source v, audio source a) pair, v != a,
   uniformly among all pairs whose combined label is exactly S (visual
   pseudo-label classes V(v) and audio classes A(a) within S, V(v) | A(a) = S).
   So the combined clips' video-level labels follow the frequent-label
   distribution. Frequent sets no pair can make are dropped (renormalised);
   if none is left, `NoEligibleLabelSetError` says why.

Everything is drawn from one `numpy.random.default_rng(seed)`: same inputs and
seed, same pairs. The paper's batch sizes are `PAPER_COUNTS`.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import torch
from torch.utils.data import Dataset

from inference.data import AVVPDataset, LabelSet

PAPER_COUNTS = (1585, 3242, 4610, 6080, 12096)  # MUG's five CMRC batches (batch 4, 6080, is the best)

LabelKey = tuple[int, ...]


class NoEligibleLabelSetError(ValueError):
    """No frequent video-level label set can be built from the eligible source clips."""


def _classes(row: np.ndarray) -> LabelKey:
    return tuple(int(c) for c in np.flatnonzero(row > 0.5))


def eligible_sources(labels: LabelSet, train_indices: np.ndarray) -> np.ndarray:
    """Training clips that may lend a track: pseudo-labels present, in taxonomy, visual pseudo-label non-empty."""
    idx = np.asarray(train_indices, dtype=np.int64)
    ok = labels.has_pseudo[idx] & ~labels.out_of_taxonomy[idx] & (labels.pseudo_visual[idx].max(axis=(1, 2)) > 0.5)
    return idx[ok]


def label_set_counts(labels: LabelSet, train_indices: np.ndarray) -> Counter:
    """How often each video-level (weak) label set occurs among `train_indices`."""
    return Counter(_classes(labels.weak[i]) for i in np.asarray(train_indices, dtype=np.int64))


class _PairTable:
    """Eligible sources grouped by their visual and audio class sets, for drawing pairs by target set."""

    def __init__(self, labels: LabelSet, sources: np.ndarray):
        self.by_visual: dict[LabelKey, list[int]] = defaultdict(list)
        self.by_audio: dict[LabelKey, list[int]] = defaultdict(list)
        self.both: Counter = Counter()
        for i in sources:
            v, a = _classes(labels.pseudo_visual[i].max(axis=0)), _classes(labels.pseudo_audio[i].max(axis=0))
            self.by_visual[v].append(int(i))
            self.by_audio[a].append(int(i))
            self.both[(v, a)] += 1

    def options(self, target: LabelKey) -> tuple[list[tuple[LabelKey, LabelKey]], np.ndarray]:
        """(visual set, audio set) groups whose union is `target`, with their numbers of pairs (v != a)."""
        goal = set(target)
        visual = [v for v in self.by_visual if goal.issuperset(v)]
        audio = [a for a in self.by_audio if goal.issuperset(a)]
        keys, weights = [], []
        for v in visual:
            for a in audio:
                if set(v) | set(a) == goal:
                    # pairs of one clip with itself do not count
                    n = len(self.by_visual[v]) * len(self.by_audio[a]) - self.both[(v, a)]
                    if n > 0:
                        keys.append((v, a))
                        weights.append(n)
        return keys, np.asarray(weights, dtype=np.float64)


def plan_combinations(labels: LabelSet, train_indices, count: int, seed: int, min_label_count: int = 50) -> np.ndarray:
    """`count` (visual_idx, audio_idx) LabelSet rows, int64 (count, 2); see the module doc for the rule."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    train_indices = np.asarray(train_indices, dtype=np.int64)
    counts = label_set_counts(labels, train_indices)
    frequent = {s: n for s, n in counts.items() if n > min_label_count and s}
    sources = eligible_sources(labels, train_indices)
    table = _PairTable(labels, sources)
    targets, weights, options = [], [], []
    for s in sorted(frequent):
        keys, w = table.options(s)
        if len(keys):
            targets.append(s)
            weights.append(frequent[s])
            options.append((keys, w / w.sum()))
    if not frequent:
        raise NoEligibleLabelSetError(
            f"CMRC: no video-level label set is seen more than {min_label_count} times among the "
            f"{len(train_indices)} training clips; lower min_label_count (0 uses every label set)")
    if not targets:
        raise NoEligibleLabelSetError(
            f"CMRC: none of the {len(frequent)} video-level label sets seen more than {min_label_count} times "
            f"can be formed from the {len(sources)} eligible source clips (pseudo-labels present, not out of "
            "taxonomy, visual pseudo-label not empty); lower min_label_count or fix the pseudo-labels")
    rng = np.random.default_rng(seed)
    p = np.asarray(weights, dtype=np.float64)
    chosen = rng.choice(len(targets), size=count, p=p / p.sum())
    pairs = np.empty((count, 2), dtype=np.int64)
    for k, t in enumerate(chosen):
        keys, w = options[t]
        v_key, a_key = keys[rng.choice(len(keys), p=w)]
        vis, aud = table.by_visual[v_key], table.by_audio[a_key]
        while True:  # uniform over the pairs of this group; v == a is rejected (the group has other pairs)
            v, a = vis[rng.integers(len(vis))], aud[rng.integers(len(aud))]
            if v != a:
                break
        pairs[k] = (v, a)
    return pairs


class CMRCDataset(Dataset):
    """Combined clips of `base` (an AVVPDataset over the same LabelSet), one per row of `pairs`."""

    def __init__(self, base: AVVPDataset, pairs: np.ndarray):
        self.base = base
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        visual_idx, audio_idx = self.pairs[k]
        return self.base.item(int(visual_idx), audio_from=int(audio_idx))


def build_cmrc_dataset(dataset: AVVPDataset, count: int, seed: int, min_label_count: int = 50) -> CMRCDataset:
    """`count` combined clips drawn from the clips of `dataset` (normally the training split).

    Concatenate it with the training set (`torch.utils.data.ConcatDataset`): its items
    have the same keys as `dataset`'s.
    """
    pairs = plan_combinations(dataset.labels, dataset.indices, count, seed, min_label_count)
    return CMRCDataset(dataset, pairs)
