"""The edit history of the store, read back: what each edit changed, a version of a track at an
edit, and each annotator's own final labels of a clip (for inter-annotator agreement).

Every committed change is an `edits` row (see `LabelStore.save_track`): cells edits keep the
packed grid before and after as hex (None: no manual track, i.e. the pseudo-label showed);
review edits keep the status and note as JSON.
"""
from __future__ import annotations

import json
from typing import Iterator

import numpy as np
from sqlalchemy import Engine, and_, or_, select

from annotation.grid import runs, unpack
from annotation.models import Edit, LabelTrack
from annotation.store import EditRecord
from annotation.taxonomy import DISPLAY_NAMES


def grid_of(packed_hex: str | None) -> np.ndarray | None:
    """The grid an edit row stored (None: no manual track at that point)."""
    return None if packed_hex is None else unpack(bytes.fromhex(packed_hex))


def _spans(cells: np.ndarray, limit: int) -> str:
    parts = []
    for cls in np.flatnonzero(cells.any(axis=1)):
        ranges = ", ".join(f"{a}–{b} s" for a, b in runs(cells[cls]))
        parts.append(f"{DISPLAY_NAMES[cls]} {ranges}")
    more = f", +{len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more


def describe(edit: EditRecord, limit: int = 3, baseline: np.ndarray | None = None) -> str:
    """One line a person reads: which cells came and went, or how the review changed. A first
    manual edit (no manual grid before) is told against `baseline`, the pseudo-label the
    annotator started from (default: an empty grid)."""
    if edit.kind == "review":
        before, after = json.loads(edit.before or "{}"), json.loads(edit.after or "{}")
        text = f"review {before.get('status', '?').replace('_', ' ')} → {after.get('status', '?').replace('_', ' ')}"
        if after.get("note") != before.get("note"):
            text += f" (note: {after.get('note') or 'removed'})"
        return text
    source = "" if edit.source == "manual" else f" {edit.source}"
    if edit.after is None:
        return f"{edit.track}{source} labels back to the pseudo-label (manual labels removed)"
    before, after = grid_of(edit.before), grid_of(edit.after)
    origin = ""
    if before is None:
        before = np.zeros_like(after) if baseline is None else baseline
        origin = " from the pseudo-label" if baseline is not None else ""
    added, removed = (after > before), (before > after)
    pieces = []
    if added.any():
        pieces.append(f"+{int(added.sum())} ({_spans(added, limit)})")
    if removed.any():
        pieces.append(f"−{int(removed.sum())} ({_spans(removed, limit)})")
    return f"{edit.track}{source} cells " + (" ".join(pieces) if pieces else "unchanged") + origin


def _label_events(engine: Engine, track: str) -> Iterator[tuple[int, str, str | None, str | None]]:
    """(clip_id, kind, annotator, after) of every manual cells edit of `track` and every review edit,
    oldest first, streamed."""
    e = Edit.__table__
    where = or_(and_(e.c.kind == "cells", e.c.source == "manual", e.c.track == track), e.c.kind == "review")
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(
            select(e.c.clip_id, e.c.kind, e.c.annotator, e.c.after).where(where).order_by(e.c.id))
        yield from result


def labels_by_annotator(engine: Engine, track: str) -> dict[int, dict[str, np.ndarray]]:
    """clip_id -> annotator -> the `track` grid that annotator left the clip at.

    An annotator labels a clip by saving manual cells (their grid is what they saved) or by
    accepting it as annotated (their grid is what the clip showed then: the manual grid, else
    the pseudo-label); their last such act counts, and removing their manual track withdraws
    it. Edits without an annotator name are left out (they cannot be told apart). Someone who
    works after another starts from the other's grid, so agreement between such a pair is an
    upper bound of independent agreement."""
    current: dict[int, np.ndarray | None] = {}  # clip -> manual grid now (None: the pseudo-label shows)
    out: dict[int, dict[str, np.ndarray | int]] = {}
    for clip_id, kind, annotator, after in _label_events(engine, track):
        if kind == "cells":
            current[clip_id] = grid_of(after)
        if not annotator:
            continue
        mine = out.setdefault(clip_id, {})
        if kind == "cells":
            if after is None:
                mine.pop(annotator, None)
            else:
                mine[annotator] = current[clip_id]
        elif json.loads(after or "{}").get("status") == "annotated":
            shown = current.get(clip_id)
            mine[annotator] = shown if shown is not None else -1  # -1: the pseudo-label, read below
    pseudo_needed = {clip for clip, grids in out.items() if any(isinstance(g, int) for g in grids.values())}
    pseudo = _pseudo_grids(engine, track, pseudo_needed)
    resolved: dict[int, dict[str, np.ndarray]] = {}
    for clip, grids in out.items():
        kept = {who: (pseudo.get(clip, np.zeros((25, 10), np.uint8)) if isinstance(g, int) else g)
                for who, g in grids.items()}
        if kept:
            resolved[clip] = kept
    return resolved


def _pseudo_grids(engine: Engine, track: str, clips: set[int]) -> dict[int, np.ndarray]:
    if not clips:
        return {}
    t = LabelTrack.__table__
    out = {}
    ids = sorted(clips)
    with engine.connect() as conn:
        for start in range(0, len(ids), 5000):
            rows = conn.execute(select(t.c.clip_id, t.c.cells).where(and_(
                t.c.source == "pseudo", t.c.track == track, t.c.clip_id.in_(ids[start:start + 5000]))))
            out.update((row.clip_id, unpack(row.cells)) for row in rows)
    return out
