"""Inter-annotator agreement on the segment grid: Cohen's kappa per class, for clips two people labelled
(saved manual labels of, or accepted: see `annotation.history.labels_by_annotator`).

For a pair of annotators and a track, every (clip, segment) cell of the clips both saved
manual labels for is one item per class, rated present/absent by each. Per class:

    kappa = (p_o - p_e) / (1 - p_e),  p_e = p_a * p_b + (1 - p_a) * (1 - p_b)

(p_o: observed agreement; p_a, p_b: each one's rate of "present"). When both rate a class
absent (or present) everywhere, p_e = 1 and kappa is undefined: reported as None with its
observed agreement, never as a perfect 1. "all" pools the 25 classes' cells.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from sqlalchemy import Engine

from annotation.history import labels_by_annotator
from annotation.store import TRACKS
from annotation.taxonomy import CLASSES, NUM_CLASSES


UPPER_BOUND_NOTE = ("note: an annotator's labels are their last save or acceptance of the clip; whoever came "
                    "second started from the first one's labels, so these kappas are upper bounds of independent "
                    "agreement")


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float]:
    """(kappa or None when undefined, observed agreement) of two 0/1 ratings of the same items."""
    a, b = np.asarray(a, bool).ravel(), np.asarray(b, bool).ravel()
    if a.size == 0:
        return None, float("nan")
    observed = float((a == b).mean())
    pa, pb = float(a.mean()), float(b.mean())
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1.0:
        return None, observed
    return (observed - expected) / (1 - expected), observed


@dataclass
class PairAgreement:
    annotators: tuple[str, str]
    track: str
    clips: int
    kappa: dict[str, float | None] = field(default_factory=dict)  # class name (or "all") -> kappa
    observed: dict[str, float] = field(default_factory=dict)  # class name (or "all") -> observed agreement
    positives: dict[str, tuple[int, int]] = field(default_factory=dict)  # class -> cells each marked present


def pair_agreement(grids_a: list[np.ndarray], grids_b: list[np.ndarray], names: tuple[str, str],
                   track: str) -> PairAgreement:
    """Kappa per class of two annotators' (25, 10) grids of the same clips, in the same order."""
    a, b = np.stack(grids_a).astype(bool), np.stack(grids_b).astype(bool)  # (N, 25, 10)
    report = PairAgreement(names, track, len(grids_a))
    for c in range(NUM_CLASSES):
        report.kappa[CLASSES[c]], report.observed[CLASSES[c]] = cohen_kappa(a[:, c], b[:, c])
        report.positives[CLASSES[c]] = (int(a[:, c].sum()), int(b[:, c].sum()))
    report.kappa["all"], report.observed["all"] = cohen_kappa(a, b)
    report.positives["all"] = (int(a.sum()), int(b.sum()))
    return report


def agreement(engine: Engine, tracks: tuple[str, ...] = TRACKS,
              between: tuple[str, str] | None = None) -> list[PairAgreement]:
    """Every pair of annotators (or the pair `between`) with at least one clip both labelled, per track."""
    if between is not None and between[0] == between[1]:
        raise ValueError(f"agreement needs two different annotators, not {between[0]!r} twice")
    reports = []
    for track in tracks:
        by_clip = labels_by_annotator(engine, track)
        people = sorted({who for grids in by_clip.values() for who in grids})
        pairs = [tuple(sorted(between))] if between else list(combinations(people, 2))
        for first, second in pairs:
            shared = [grids for grids in by_clip.values() if first in grids and second in grids]
            if shared:
                reports.append(pair_agreement([g[first] for g in shared], [g[second] for g in shared],
                                              (first, second), track))
    return reports


def format_agreement(reports: list[PairAgreement]) -> str:
    """A text table per pair and track: kappa and observed agreement per class."""
    if not reports:
        return "no clip was labelled by two annotators"
    blocks = [UPPER_BOUND_NOTE]
    for r in reports:
        lines = [f"{r.annotators[0]} vs {r.annotators[1]}, {r.track}: {r.clips} clip(s) both labelled",
                 f"{'class':<26}{'kappa':>8}{'agree':>8}{'cells A':>9}{'cells B':>9}"]
        for name in (*CLASSES, "all"):
            k = r.kappa[name]
            lines.append(f"{name:<26}{'—' if k is None else f'{k:.3f}':>8}{100 * r.observed[name]:>7.1f}%"
                         f"{r.positives[name][0]:>9}{r.positives[name][1]:>9}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
