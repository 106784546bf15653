"""The segmentation window's clip list: subset, split, name, the chosen prediction's mean IoU, decisions made;
and reading a clip's wav for the speakers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from annotation import avs_audio
from annotation.avs_store import AVSRecord
from ui.avs_scores import QueueScores
from ui.avs_widgets import iou_colour

SUBSET, SPLIT, NAME, IOU, REVIEWED = range(5)
HEADERS = ("Subset", "Split", "Clip", "IoU", "Reviewed")
Index = QModelIndex | QPersistentModelIndex


class AVSClipModel(QAbstractTableModel):
    """Rows of AVS clips in the order given; IoU and review columns from the latest `QueueScores`."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.records: list[AVSRecord] = []
        self.scores: QueueScores | None = None
        self.scoring = False  # the IoU column reads "…" while the scores are computed
        self._rows: dict[int, int] = {}

    def set_records(self, records: list[AVSRecord]) -> None:
        self.beginResetModel()
        self.records = list(records)
        self._rows = {r.id: i for i, r in enumerate(self.records)}
        self.endResetModel()

    def set_scores(self, scores: QueueScores | None, scoring: bool = False) -> None:
        self.scores, self.scoring = scores, scoring
        self._changed(0, len(self.records) - 1, IOU, REVIEWED)

    def set_reviewed(self, clip_id: int, decisions: dict[int, str]) -> None:
        """One clip's decisions as they are now (after a decision in this window)."""
        if self.scores is not None:
            self.scores.reviewed[clip_id] = dict(decisions)
        row = self._rows.get(clip_id)
        if row is not None:
            self._changed(row, row, REVIEWED, REVIEWED)

    def _changed(self, first: int, last: int, left: int, right: int) -> None:
        if last >= first:
            self.dataChanged.emit(self.index(first, left), self.index(last, right))

    def row_of(self, clip_id: int) -> int | None:
        return self._rows.get(clip_id)

    def mean_iou(self, clip_id: int) -> float | None:
        score = None if self.scores is None else self.scores.clips.get(clip_id)
        return None if score is None else score.mean

    # ---- Qt model ------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.records)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole and section == IOU:
            return ("Mean IoU of the reviewed prediction over the clip's frames with ground truth (worst first: the "
                    "Order box). A frame where nothing sounds and nothing is predicted counts 1; AVSBench's mIoU "
                    "scores such frames by their background pixels instead (avvp-studio avs eval)")
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        record, col = self.records[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == SUBSET:
                return record.subset.upper()
            if col == SPLIT:
                return record.split
            if col == NAME:
                return record.name
            if col == IOU:
                mean = self.mean_iou(record.id)
                return f"{mean:.3f}" if mean is not None else "…" if self.scoring else "—"
            decided = {} if self.scores is None else self.scores.reviewed.get(record.id, {})
            return f"{len(decided)}/{record.frames}" if decided else ""
        if role == Qt.ItemDataRole.ForegroundRole and col == IOU:
            mean = self.mean_iou(record.id)
            return iou_colour(mean) if mean is not None else None
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (IOU, REVIEWED):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            category = f" · {record.category}" if record.category else ""
            return f"{record.subset.upper()} {record.split} · {record.name}{category} · {record.frames} frames"
        return None


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(float32 mono samples in [-1, 1], rate) of a WAV file (the reader the VGGish front end uses);
    ValueError saying why it cannot be read."""
    samples, rate = avs_audio.read_wav(path)
    if samples.size == 0:
        raise ValueError(f"{path.name} holds no audio samples")
    return (samples.mean(axis=1) if samples.ndim == 2 else samples).astype(np.float32), rate
