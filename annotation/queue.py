"""The review queue: which clip should a person look at next (the MUG manual-annotation step).

First come the training clips whose visual pseudo-label is empty (the visual
pseudo-labeller saw nothing, so a human must say what is visible), then any clip
ordered by how much its audio and visual pseudo-labels disagree.

Why columnar: the queue is filtered and re-sorted on every keystroke of the
search box over 10,000+ clips. `ReviewQueue.load` reads everything it needs
once (clips, reviews, pseudo tracks unpacked all at once, manual-track
existence) into numpy arrays; `rows` is then numpy masks and a lexsort, and
`refresh_clip` patches one clip after an edit instead of reloading.

Disagreement of a clip: the fraction of cells, among its weak classes x 10
segments, where the audio and the visual pseudo-label differ. 0 when either
pseudo-label is missing or the clip has no weak class. (Restricted to the weak
classes because outside them both tracks are false by definition of the task,
and counting those cells would only dilute the score by the number of classes.)
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal, Sequence

import numpy as np
from sqlalchemy import Engine, select

from annotation.grid import PACKED_BYTES
from annotation.models import Clip, LabelTrack, Review
from annotation.store import REVIEW_STATUSES, TRACKS, as_utc
from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS

QueueSort = Literal["id", "weak_count", "disagreement", "uncertainty_audio", "uncertainty_visual", "model_disagreement"]
SORTS: tuple[str, ...] = ("id", "weak_count", "disagreement", "uncertainty_audio", "uncertainty_visual",
                          "model_disagreement")
MODEL_SORTS = SORTS[3:]  # need a prediction run (`ReviewQueue.attach_run`); 0 for every clip without one
RATE_WINDOW = timedelta(hours=1)
MIN_PACE_SPAN = 300.0  # seconds; a pace measured over less says nothing (3 quick clips != 2000 clips/h)
_CLASS_BITS = np.arange(NUM_CLASSES, dtype=np.int64)


@dataclass(frozen=True)
class QueueFilter:
    """Which clips the queue shows; every condition is ANDed, None means "any"."""

    split: str | None = "train"  # None or "all": any split
    statuses: frozenset[str] | None = frozenset({"pending"})
    empty_visual: bool | None = True  # True: visual pseudo exists and is all-zero; False: exists, non-empty
    class_index: int | None = None  # clips whose weak label contains this class
    text: str = ""  # case-insensitive substring of the filename

    def __post_init__(self) -> None:
        if self.statuses is not None:
            object.__setattr__(self, "statuses", frozenset(self.statuses))
            unknown = self.statuses - set(REVIEW_STATUSES)
            if unknown:
                raise ValueError(f"unknown review status(es) {sorted(unknown)}; expected some of {REVIEW_STATUSES}")
        if self.class_index is not None and not 0 <= self.class_index < NUM_CLASSES:
            raise ValueError(f"class index {self.class_index} outside 0..{NUM_CLASSES - 1}")

    def to_dict(self) -> dict:
        return {"split": self.split, "statuses": sorted(self.statuses) if self.statuses is not None else None,
                "empty_visual": self.empty_visual, "class_index": self.class_index, "text": self.text}

    @classmethod
    def from_dict(cls, data: dict) -> "QueueFilter":
        """From `to_dict`'s output; raises ValueError (or TypeError) for anything else."""
        statuses = data.get("statuses")
        return cls(split=data.get("split"), statuses=None if statuses is None else frozenset(statuses),
                   empty_visual=data.get("empty_visual"), class_index=data.get("class_index"),
                   text=str(data.get("text", "")))


DEFAULT_FILTER = QueueFilter()


@dataclass(frozen=True, slots=True)
class QueueRow:
    clip_id: int
    filename: str
    split: str
    weak: tuple[int, ...]
    weak_count: int
    status: str
    annotator: str | None
    reviewed_at: datetime | None
    empty_visual: bool | None  # None: no visual pseudo-label stored
    disagreement: float  # see the module docstring
    has_manual: bool


@dataclass(frozen=True)
class QueueProgress:
    """Reviewed / total of a queue scope, the recent pace and what it predicts."""

    reviewed: int
    total: int
    per_hour: float | None  # None: too few recent reviews to say
    recent: int  # reviews the pace was measured on

    @property
    def remaining(self) -> int:
        return self.total - self.reviewed

    @property
    def fraction(self) -> float:
        return self.reviewed / self.total if self.total else 1.0

    @property
    def eta_seconds(self) -> float | None:
        if self.remaining == 0:
            return 0.0
        if not self.per_hour:
            return None
        return self.remaining / self.per_hour * 3600.0

    def summary(self) -> str:
        """'12 / 40 reviewed · 35 clips/h · ~48 min left' (parts omitted when unknown)."""
        parts = [f"{self.reviewed} / {self.total} reviewed"]
        if self.total and self.remaining == 0:
            return parts[0] + " · done"
        if self.per_hour is not None:
            parts.append(f"{self.per_hour:.0f} clips/h")
        eta = self.eta_seconds
        if eta is not None:
            parts.append(_format_eta(eta))
        return " · ".join(parts)


def _format_eta(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "<1 min left"
    if minutes < 60:
        return f"~{minutes} min left"
    return f"~{minutes // 60} h {minutes % 60:02d} min left"


def unpack_many(blobs: Sequence[bytes]) -> np.ndarray:
    """Packed 32-byte grids -> (N, 25, 10) uint8, in one numpy call (not one unpack per row)."""
    if not blobs:
        return np.zeros((0, NUM_CLASSES, NUM_SEGMENTS), dtype=np.uint8)
    joined = b"".join(bytes(b) for b in blobs)
    if len(joined) != len(blobs) * PACKED_BYTES or any(len(b) != PACKED_BYTES for b in blobs):
        raise ValueError(f"packed grids must be {PACKED_BYTES} bytes each")
    bits = np.unpackbits(np.frombuffer(joined, dtype=np.uint8).reshape(len(blobs), PACKED_BYTES), axis=1)
    return bits[:, : NUM_CLASSES * NUM_SEGMENTS].reshape(len(blobs), NUM_CLASSES, NUM_SEGMENTS)


def weak_bits(masks: np.ndarray) -> np.ndarray:
    """Weak-label bit masks (N,) -> (N, 25) bool."""
    return ((np.asarray(masks, dtype=np.int64)[:, None] >> _CLASS_BITS) & 1).astype(bool)


def disagreement(audio: np.ndarray, visual: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Per clip: fraction of weak-class cells where the (N, 25, 10) audio and visual grids differ."""
    differ = (audio != visual) & weak[:, :, None]
    cells = weak.sum(axis=1) * NUM_SEGMENTS
    return np.divide(differ.sum(axis=(1, 2)), cells, out=np.zeros(len(weak)), where=cells > 0)


def _epoch(value: datetime | None) -> float:
    return as_utc(value).timestamp() if value is not None else np.nan


class ReviewQueue:
    """All clips with their review state, held as columns; filter/sort in memory, patch one clip after an edit."""

    def __init__(self) -> None:
        empty = np.zeros((0, NUM_CLASSES, NUM_SEGMENTS), np.uint8)
        self._set_columns([], [], [], [], [], [], [], empty, empty, [], [], [])

    # ---- loading ----------------------------------------------------------------------
    def load(self, engine: Engine) -> "ReviewQueue":
        """Read every clip once; returns self so `ReviewQueue().load(engine)` reads naturally."""
        c, r, t = Clip.__table__, Review.__table__, LabelTrack.__table__
        with engine.connect() as conn:
            clips = conn.execute(select(c.c.id, c.c.filename, c.c.split, c.c.weak_mask).order_by(c.c.id)).all()
            reviews = conn.execute(select(r.c.clip_id, r.c.status, r.c.annotator, r.c.updated_at)).all()
            pseudo = conn.execute(select(t.c.clip_id, t.c.track, t.c.cells).where(t.c.source == "pseudo")).all()
            manual = conn.execute(select(t.c.clip_id).where(t.c.source == "manual").distinct()).scalars().all()
        ids = np.fromiter((row[0] for row in clips), dtype=np.int64, count=len(clips))
        n = len(ids)
        status, annotator, reviewed_at = ["pending"] * n, [None] * n, [None] * n
        owners = np.fromiter((row[0] for row in reviews), dtype=np.int64, count=len(reviews))
        for i, (clip_id, st, who, at) in zip(np.searchsorted(ids, owners).tolist(), reviews):
            if i < n and ids[i] == clip_id:  # a clip without a review row is pending
                status[i], annotator[i], reviewed_at[i] = st, who, as_utc(at)
        grids, has = {}, {}
        for track in ("audio", "visual"):
            rows = [row for row in pseudo if row[1] == track]
            owners = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            pos = np.searchsorted(ids, owners)
            keep = pos < n
            keep[keep] = ids[pos[keep]] == owners[keep]  # tracks of unknown clips (none, with FKs) are dropped
            grids[track] = np.zeros((n, NUM_CLASSES, NUM_SEGMENTS), dtype=np.uint8)
            grids[track][pos[keep]] = unpack_many([row[2] for row, k in zip(rows, keep.tolist()) if k])
            has[track] = np.zeros(n, dtype=bool)
            has[track][pos[keep]] = True
        manual_ids = np.asarray(manual, dtype=np.int64)
        self._set_columns(
            ids, [row[1] for row in clips], [row[2] for row in clips], [row[3] for row in clips],
            status, annotator, reviewed_at, grids["audio"], grids["visual"],
            has["audio"], has["visual"], np.isin(ids, manual_ids),
        )
        return self

    def _set_columns(self, ids, filenames, splits, masks, status, annotator, reviewed_at,
                     audio, visual, has_audio, has_visual, has_manual) -> None:
        self._ids = np.asarray(ids, dtype=np.int64)
        self._filenames: list[str] = list(filenames)
        self._lower: list[str] = [f.lower() for f in self._filenames]
        self._split_names: list[str] = sorted(set(splits))
        code = {s: i for i, s in enumerate(self._split_names)}
        self._split = np.fromiter((code[s] for s in splits), dtype=np.int16, count=len(splits))
        self._weak = weak_bits(np.asarray(masks, dtype=np.int64))
        self._weak_count = self._weak.sum(axis=1).astype(np.int16)
        self._status_names: list[str] = list(REVIEW_STATUSES)
        self._status = np.fromiter((self._status_code(s) for s in status), dtype=np.int16, count=len(status))
        self._annotator = np.empty(len(self._ids), dtype=object)
        self._annotator[:] = list(annotator)
        self._reviewed_at: list[datetime | None] = list(reviewed_at)
        self._reviewed_ts = np.fromiter((_epoch(v) for v in reviewed_at), dtype=np.float64, count=len(reviewed_at))
        has_visual = np.asarray(has_visual, dtype=bool)
        visual_empty = ~visual.any(axis=(1, 2))
        self._empty_visual = np.where(has_visual, visual_empty.astype(np.int8), -1).astype(np.int8)
        both = np.asarray(has_audio, dtype=bool) & has_visual
        self._disagreement = np.where(both, disagreement(audio, visual, self._weak), 0.0)
        self._has_manual = np.asarray(has_manual, dtype=bool)
        self._rows: list[QueueRow | None] = [None] * len(self._ids)
        n = len(self._ids)
        self.run: str | None = None  # the prediction source the model sorts use
        self._model = {name: np.zeros(n) for name in MODEL_SORTS}
        self._run_grids = np.zeros((n, 2, NUM_CLASSES, NUM_SEGMENTS), np.uint8)
        self._has_run = np.zeros(n, bool)

    def attach_run(self, engine: Engine, source: str | None) -> "ReviewQueue":
        """The model sorts follow prediction run `source` (None: none). Per clip and track,
        uncertainty is the mean over its 250 cells of 1 - |2p - 1| (1 where the model says 0.5, 0
        where it is sure; the same 250 cells for every clip, so the order is that of the summed
        doubt); model disagreement is the fraction of the clip's 500 cells where the run's 0/1
        prediction differs from the labels as they are now (manual where edited, else pseudo).
        Clips the run did not predict score 0."""
        from annotation.predictions import run_scores  # no cost for windows that never attach a run

        n = len(self._ids)
        self.run = source
        self._model = {name: np.zeros(n) for name in MODEL_SORTS}
        self._run_grids = np.zeros((n, 2, NUM_CLASSES, NUM_SEGMENTS), np.uint8)
        self._has_run = np.zeros(n, bool)
        self._rows = [None] * n
        if source is None:
            return self
        scores = run_scores(engine, source)
        positions = self._positions(np.fromiter(scores, dtype=np.int64, count=len(scores)))
        for position, clip_scores in zip(positions.tolist(), scores.values()):
            if position >= 0:
                for track in TRACKS:
                    probs = getattr(clip_scores, track)
                    self._model[f"uncertainty_{track}"][position] = float(np.mean(1 - np.abs(2 * probs - 1)))
        t = LabelTrack.__table__
        with engine.connect() as conn:
            rows = conn.execute(select(t.c.clip_id, t.c.track, t.c.cells).where(t.c.source == source)).all()
            labels = conn.execute(select(t.c.clip_id, t.c.track, t.c.source, t.c.cells)
                                  .where(t.c.source.in_(("manual", "pseudo")))).all()
        positions = self._positions(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)))
        keep = positions >= 0
        if keep.any():
            tracks = np.array([TRACKS.index(row[1]) for row in rows])[keep]
            self._run_grids[positions[keep], tracks] = unpack_many([row[2] for row, k in zip(rows, keep) if k])
            self._has_run[positions[keep]] = True
        owners = self._positions(np.fromiter((row[0] for row in labels), dtype=np.int64, count=len(labels)))
        predicted = np.flatnonzero(self._has_run)
        index = np.full(n, -1)
        index[predicted] = np.arange(len(predicted))
        self._set_model_disagreement(predicted, self._labels_now(
            len(predicted), ((index[o], track, src, cells) for o, (_, track, src, cells) in zip(owners.tolist(), labels)
                             if o >= 0 and index[o] >= 0)))
        return self

    def _positions(self, clip_ids: np.ndarray) -> np.ndarray:
        """Queue positions of `clip_ids` (-1 for clips not in the queue)."""
        pos = np.searchsorted(self._ids, clip_ids)
        found = pos < len(self._ids)
        found[found] = self._ids[pos[found]] == clip_ids[found]
        return np.where(found, pos, -1)

    @staticmethod
    def _labels_now(count: int, rows) -> np.ndarray:
        """(count, 2, 25, 10) grids as the clips show now, from (i, track, source, cells) rows of the
        manual and pseudo tracks: manual where edited, else pseudo, else empty."""
        current = np.zeros((count, 2, NUM_CLASSES, NUM_SEGMENTS), np.uint8)
        rank = np.full((count, 2), -1)
        for i, track, source, cells in rows:
            if source not in ("manual", "pseudo"):
                continue
            k, level = TRACKS.index(track), 1 if source == "manual" else 0
            if level > rank[i, k]:  # manual wins over pseudo
                current[i, k], rank[i, k] = unpack_many([cells])[0], level
        return current

    def _set_model_disagreement(self, positions: np.ndarray, current: np.ndarray) -> None:
        differ = (current != self._run_grids[positions]).mean(axis=(1, 2, 3))
        self._model["model_disagreement"][positions] = np.where(self._has_run[positions], differ, 0.0)

    def model_score(self, clip_id: int, sort: str) -> float:
        position = self.position_of(clip_id)
        return 0.0 if position is None else float(self._model[sort][position])

    def _status_code(self, status: str) -> int:
        # statuses outside REVIEW_STATUSES (written by a newer version) still show, under their own name
        try:
            return self._status_names.index(status)
        except ValueError:
            self._status_names.append(status)
            return len(self._status_names) - 1

    def __len__(self) -> int:
        return len(self._ids)

    # ---- querying ---------------------------------------------------------------------
    def mask(self, flt: QueueFilter, ignore_status: bool = False, at: np.ndarray | None = None) -> np.ndarray:
        """Bool per loaded clip (or per position of `at`): does it pass `flt`?"""
        at = np.arange(len(self._ids)) if at is None else np.asarray(at, dtype=np.int64)
        keep = np.ones(len(at), dtype=bool)
        if flt.split is not None and flt.split != "all":
            code = self._split_names.index(flt.split) if flt.split in self._split_names else -1
            keep &= self._split[at] == code
        if flt.statuses is not None and not ignore_status:
            codes = [i for i, s in enumerate(self._status_names) if s in flt.statuses]
            keep &= np.isin(self._status[at], codes)
        if flt.empty_visual is not None:
            keep &= self._empty_visual[at] == (1 if flt.empty_visual else 0)
        if flt.class_index is not None:
            keep &= self._weak[at, flt.class_index]
        if flt.text:
            needle = flt.text.lower()
            candidates = np.flatnonzero(keep)
            lower = self._lower
            hits = np.fromiter((needle in lower[i] for i in at[candidates].tolist()), dtype=bool,
                               count=len(candidates))
            keep[candidates[~hits]] = False
        return keep

    def passes(self, clip_id: int, flt: QueueFilter) -> bool:
        """Does one clip pass `flt` (as `mask` would say, without a pass over the whole queue)?"""
        position = self.position_of(clip_id)
        return position is not None and bool(self.mask(flt, at=np.array([position]))[0])

    def positions(self, flt: QueueFilter | None = DEFAULT_FILTER, sort: QueueSort = "id",
                  descending: bool = False, include: set[int] | frozenset[int] = frozenset()) -> np.ndarray:
        """Row positions (for `row_at`) of the clips passing `flt` (None: every clip) or in `include`,
        in queue order. Ties keep clip-id order whichever the direction, so the order never flickers.
        """
        if sort not in SORTS:
            raise ValueError(f"unknown sort {sort!r}; expected one of {SORTS}")
        # ids are ascending, so idx is in id order
        if flt is None:
            idx = np.arange(len(self._ids))
        else:
            keep = self.mask(flt)
            if include:
                keep |= np.isin(self._ids, np.fromiter(include, dtype=np.int64, count=len(include)))
            idx = np.flatnonzero(keep)
        if sort == "id":
            return idx[::-1].copy() if descending else idx
        column = {"weak_count": self._weak_count, "disagreement": self._disagreement, **self._model}[sort]
        key = column[idx]
        return idx[np.lexsort((self._ids[idx], -key if descending else key))]

    def rows(self, flt: QueueFilter | None = DEFAULT_FILTER, sort: QueueSort = "id",
             descending: bool = False) -> list[QueueRow]:
        """The queue's rows; `flt=None` lists every loaded clip."""
        return [self.row_at(p) for p in self.positions(flt, sort, descending).tolist()]

    def row_at(self, position: int) -> QueueRow:
        """The row of the clip at `position` (built once, cached until that clip is refreshed)."""
        row = self._rows[position]
        if row is None:
            empty = int(self._empty_visual[position])
            row = QueueRow(
                clip_id=int(self._ids[position]),
                filename=self._filenames[position],
                split=self._split_names[self._split[position]],
                weak=tuple(np.flatnonzero(self._weak[position]).tolist()),
                weak_count=int(self._weak_count[position]),
                status=self._status_names[self._status[position]],
                annotator=self._annotator[position],
                reviewed_at=self._reviewed_at[position],
                empty_visual=None if empty < 0 else bool(empty),
                disagreement=float(self._disagreement[position]),
                has_manual=bool(self._has_manual[position]),
            )
            self._rows[position] = row
        return row

    def clip_ids(self, positions: np.ndarray) -> np.ndarray:
        return self._ids[positions]

    def position_of(self, clip_id: int) -> int | None:
        i = int(np.searchsorted(self._ids, clip_id))
        return i if i < len(self._ids) and self._ids[i] == clip_id else None

    def row(self, clip_id: int) -> QueueRow:
        position = self.position_of(clip_id)
        if position is None:
            raise KeyError(f"clip #{clip_id} is not in the loaded queue")
        return self.row_at(position)

    # ---- keeping up with edits --------------------------------------------------------
    def refresh_clip(self, engine: Engine, clip_id: int) -> QueueRow:
        """Re-read one clip's review, tracks (manual existence, pseudo-labels, the model disagreement) in
        two small queries.

        Clips added to the database after `load` are not picked up; load again for those.
        """
        position = self.position_of(clip_id)
        if position is None:
            raise KeyError(f"clip #{clip_id} is not in the loaded queue; call load() again")
        r, t = Review.__table__, LabelTrack.__table__
        with engine.connect() as conn:
            review = conn.execute(
                select(r.c.status, r.c.annotator, r.c.updated_at).where(r.c.clip_id == clip_id)
            ).first()
            tracks = conn.execute(
                select(t.c.track, t.c.source, t.c.cells).where(t.c.clip_id == clip_id)
            ).all()
        status, who, at = review if review is not None else ("pending", None, None)
        self._status[position] = self._status_code(status)
        self._annotator[position] = who
        self._reviewed_at[position] = as_utc(at)
        self._reviewed_ts[position] = _epoch(at)
        self._has_manual[position] = any(source == "manual" for _, source, _ in tracks)
        pseudo = {track: cells for track, source, cells in tracks if source == "pseudo"}
        if "visual" in pseudo:
            self._empty_visual[position] = int(not any(bytes(pseudo["visual"])))
        else:
            self._empty_visual[position] = -1
        if "audio" in pseudo and "visual" in pseudo:
            grids = unpack_many([pseudo["audio"], pseudo["visual"]])
            self._disagreement[position] = disagreement(grids[:1], grids[1:], self._weak[position:position + 1])[0]
        else:
            self._disagreement[position] = 0.0
        if self.run is not None:  # an edit moves it
            self._set_model_disagreement(np.array([position]), self._labels_now(
                1, ((0, track, source, cells) for track, source, cells in tracks)))
        self._rows[position] = None
        return self.row_at(position)

    # ---- progress ---------------------------------------------------------------------
    def progress(self, flt: QueueFilter | None = None, annotator: str | None = None,
                 now: datetime | None = None, since: datetime | None = None) -> QueueProgress:
        """Reviewed / total over `flt`'s clips ignoring its status condition (default: DEFAULT_FILTER).

        Reviewed = any status but pending. Pace: the reviews (by `annotator`, or by
        anyone when None) of those clips stamped in the last hour before `now`.
        With `since` (the session start) the window starts at the later of the two
        and pace = reviews / window length, idle time included, so the estimate is
        honest about breaks. Without `since` pace = (n - 1) / (last - first review),
        the rate between reviews, which needs two reviews. Spans shorter than
        MIN_PACE_SPAN count as MIN_PACE_SPAN, so the first minutes of a session give
        a cautious pace rather than an absurd one. Only the latest review of a clip
        is stored, so a clip reviewed twice counts once.
        """
        flt = DEFAULT_FILTER if flt is None else flt
        now = as_utc(now) if now is not None else datetime.now(timezone.utc)
        scope = self.mask(flt, ignore_status=True)
        pending = self._status_names.index("pending")
        done = scope & (self._status != pending)
        start = now - RATE_WINDOW
        if since is not None:
            start = max(start, as_utc(since))
        recent = done & (self._reviewed_ts >= start.timestamp()) & (self._reviewed_ts <= now.timestamp())
        if annotator is not None:
            recent &= self._annotator == annotator
        n = int(recent.sum())
        per_hour = None
        if since is not None and n:
            per_hour = n / max((now - start).total_seconds(), MIN_PACE_SPAN) * 3600.0
        elif since is None and n >= 2:
            stamps = self._reviewed_ts[recent]
            per_hour = (n - 1) / max(float(stamps.max() - stamps.min()), MIN_PACE_SPAN) * 3600.0
        return QueueProgress(reviewed=int(done.sum()), total=int(scope.sum()), per_hour=per_hour, recent=n)


__all__ = [
    "DEFAULT_FILTER", "QueueFilter", "QueueProgress", "QueueRow", "QueueSort", "ReviewQueue", "SORTS",
    "disagreement", "unpack_many", "weak_bits",
]
