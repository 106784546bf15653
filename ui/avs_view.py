"""Audio-visual segmentation masks over the video: the segmentation window.

Lists the AVS clips of the database (AVSBench S4, MS3, AVSS) and shows the selected clip's current frame
with its masks over it: the ground truth and each prediction source (toggled one by one), at an opacity,
filled or outlined, AVSS classes in the AVSBench palette, a prediction's probability map on request; the
frame's IoU of the reviewed prediction against the truth. Frames are one per second: Left / Right step,
Space plays them on the wav's clock (`ui.media_clock`; without a sound device on a timer). The clip list
can be ordered worst IoU first (computed in a worker thread). A / R accept or reject the reviewed
prediction on the frame: stored at once, undoable (Ctrl+Z, Ctrl+Shift+Z), a conflict with another
annotator's decision is said and the frame re-read (`ui.avs_review`).

Opened from the main window: Model > Segmentation masks… (`install_avs_menu`).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QItemSelectionModel, QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QIcon, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from annotation.avs_store import REVIEWED, TRUTH, AVSRecord, MaskRow, avs_clips, load_masks, mask_sources
from annotation.avsbench import AVSS_CLASSES, read_image
from annotation.errors import DataFileError
from annotation.models import AVSClip
from ui.avs_clips import NAME, AVSClipModel, read_wav
from ui.avs_render import (
    MODES,
    PALETTE,
    TRUTH_COLOUR,
    Layer,
    enlarge_frame,
    factor,
    prediction_colour,
    render,
)
from ui.avs_review import MaskReview
from ui.avs_scores import FrameIoU, QueueScores, clip_scores, row_iou, worst_first
from ui.avs_widgets import DECISION_COLOUR, DECISION_MARK, FrameStrip, MaskView, iou_colour
from ui.media_clock import MediaClock
from ui.player import transport_icon
from ui.theme import current_is_dark, muted_text, text_colour
from ui.workers import BackgroundTask

THUMB_HEIGHT = 64
DEFAULT_OPACITY = 55
ORDERS = (("Order: subset, split, name", "name"), ("Order: worst IoU first", "worst"))


def empty_message(db_label: str = "") -> str:
    """What to do when the database holds no AVS clip."""
    db = f' --db "{db_label}"' if db_label else ""
    return ("This database holds no audio-visual segmentation (AVS) clips.\n\n"
            "Make the synthetic AVSBench-layout demo and import it:\n"
            f"    avvp-studio avs demo --out avsdemo --subset s4\n"
            f"    avvp-studio avs import avsdemo --subset s4{db}\n\n"
            "or import a real AVSBench folder: avvp-studio avs import ROOT --subset s4|ms3|avss" + db)


def count_avs_clips(engine: Engine | None) -> tuple[int, str | None]:
    """(number of AVS clips, None) or (0, why they cannot be counted)."""
    if engine is None:
        return 0, "no database is open"
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(AVSClip.__table__)) or 0), None
    except SQLAlchemyError as exc:
        return 0, (f"the database cannot list AVS clips ({type(exc).__name__}); it may predate them: open it "
                   "once writable so its schema is brought up to date")


def swatch(colour: tuple[int, int, int] | None, size: int = 14) -> QIcon:
    """A square of `colour`; None: stripes of the first AVSS palette colours (class colours)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    if colour is None:
        for k in range(4):
            painter.fillRect(k * size // 4, 0, size // 4 + 1, size, QColor(*PALETTE[k + 1]))
    else:
        painter.fillRect(0, 0, size, size, QColor(*colour))
    painter.end()
    return QIcon(pixmap)


def class_names(root: Path) -> list[str]:
    """AVSS class names from the subset folder's label2idx.json; 'class N' where it cannot be read."""
    names = [f"class {i}" for i in range(AVSS_CLASSES)]
    try:
        mapping = json.loads((root / "label2idx.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return names
    if isinstance(mapping, dict):
        for name, index in mapping.items():
            if isinstance(index, int) and 0 <= index < AVSS_CLASSES:
                names[index] = str(name)
    return names


def short(source: str) -> str:
    return source.split(":", 1)[1] if source.startswith("prediction:") else source


class AVSWindow(QMainWindow):
    """See the module docstring."""

    scores_ready = Signal(object)  # QueueScores of the reviewed prediction, computed off the GUI thread
    frame_shown = Signal(int)

    def __init__(self, engine: Engine, annotator: str, parent: QWidget | None = None, *, sound: bool = True,
                 db_label: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Segmentation masks — AVVP Studio")
        self.setObjectName("avsWindow")
        self.resize(1500, 900)
        self.engine, self.annotator, self.db_label = engine, annotator, db_label
        self.review = MaskReview(engine, annotator, self)
        self.clock = MediaClock(self, sound=sound)
        self.records: list[AVSRecord] = avs_clips(engine)
        self._by_id = {r.id: r for r in self.records}
        self.sources = [s for s in mask_sources(engine) if s.startswith("prediction:")]
        self.record: AVSRecord | None = None
        self.frame = 0
        self.masks: dict[str, dict[int, MaskRow]] = {}
        self._arrays: dict[tuple[str, int], np.ndarray] = {}
        self.frames_rgb: list[np.ndarray | None] = []
        self._frame_errors: dict[int, str] = {}
        self._enlarged: dict[int, tuple[np.ndarray, int]] = {}
        self.frame_ious: list[FrameIoU | None] = []
        self.current_iou: FrameIoU | None = None
        self.composite: np.ndarray | None = None
        self.composite_factor = 1
        self.scores: QueueScores | None = None
        self._tasks: set[BackgroundTask] = set()
        self._class_names: dict[Path, list[str]] = {}
        self.actions: dict[str, QAction] = {}
        self._build()
        self._build_actions()
        self._connect()
        self._fill_filters()
        self.apply_filter()
        if not self.records:
            self.view.set_placeholder(empty_message(db_label))
        self.start_scoring()
        if parent is not None:
            parent.installEventFilter(self)  # the main window closing closes this one (and its worker) first

    def eventFilter(self, watched, event) -> bool:
        if watched is self.parent() and event.type() == QEvent.Type.Close:
            self.close() if self.isVisible() else self.stop()
        return super().eventFilter(watched, event)

    # ---- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        muted = muted_text(current_is_dark()).name()
        # left: the clip list
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(6, 6, 6, 6)
        lv.setSpacing(4)
        filters = QHBoxLayout()
        self.subset_combo, self.split_combo = QComboBox(), QComboBox()
        filters.addWidget(self.subset_combo)
        filters.addWidget(self.split_combo)
        lv.addLayout(filters)
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search clip name…")
        self.search_edit.setClearButtonEnabled(True)
        lv.addWidget(self.search_edit)
        self.order_combo = QComboBox()
        for text, value in ORDERS:
            self.order_combo.addItem(text, value)
        self.order_combo.setToolTip("Worst IoU first: clips by the mean IoU of the reviewed prediction over their "
                                    "frames with ground truth, lowest first (clips without one last)")
        lv.addWidget(self.order_combo)
        self.model = AVSClipModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        lv.addWidget(self.table, 1)
        self.score_bar = QProgressBar()
        self.score_bar.setTextVisible(True)
        self.score_bar.setFormat("Scoring clips %v / %m")
        self.score_bar.hide()
        lv.addWidget(self.score_bar)
        self.count_label = QLabel("")
        self.count_label.setStyleSheet(f"color: {muted};")
        lv.addWidget(self.count_label)

        # centre: banner, title, the frame, the strip, the transport
        centre = QWidget()
        cv = QVBoxLayout(centre)
        cv.setContentsMargins(6, 6, 6, 6)
        cv.setSpacing(6)
        banner = self.banner = QWidget()
        banner.setStyleSheet("background: #5c1f1d; border-radius: 4px;")
        bl = QHBoxLayout(banner)
        bl.setContentsMargins(10, 6, 6, 6)
        self.notice_label = QLabel("")
        self.notice_label.setWordWrap(True)
        self.notice_label.setStyleSheet("color: #ffffff; background: transparent;")
        bl.addWidget(self.notice_label, 1)
        dismiss = QToolButton()
        dismiss.setText("✕")
        dismiss.setAutoRaise(True)
        dismiss.setStyleSheet("color: #ffffff;")
        dismiss.clicked.connect(banner.hide)
        bl.addWidget(dismiss)
        banner.hide()
        cv.addWidget(banner)
        self.title_label = QLabel("")
        font = self.title_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.title_label.setFont(font)
        cv.addWidget(self.title_label)
        self.view = MaskView()
        cv.addWidget(self.view, 1)
        self.strip = FrameStrip()
        cv.addWidget(self.strip)
        transport = QHBoxLayout()
        colour = text_colour(current_is_dark())
        self.prev_button, self.play_button, self.next_button = QToolButton(), QToolButton(), QToolButton()
        for button, kind, tip in ((self.prev_button, "frame_back", "Previous frame (Left)"),
                                  (self.play_button, "play", "Play with sound / pause (Space)"),
                                  (self.next_button, "frame_forward", "Next frame (Right)")):
            button.setIcon(transport_icon(kind, colour))
            button.setToolTip(tip)
            button.setAutoRaise(True)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            transport.addWidget(button)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setPageStep(1)
        transport.addWidget(self.slider, 1)
        self.frame_label = QLabel("")
        self.frame_label.setMinimumWidth(150)
        transport.addWidget(self.frame_label)
        cv.addLayout(transport)
        self.sound_label = QLabel("")
        self.sound_label.setStyleSheet(f"color: {muted};")
        self.sound_label.setWordWrap(True)
        cv.addWidget(self.sound_label)

        # right: layers, the frame's IoU, the decision
        right = QWidget()
        right.setMinimumWidth(300)
        right.setMaximumWidth(380)
        rv = QVBoxLayout(right)
        rv.setContentsMargins(6, 6, 6, 6)
        layers = QGroupBox("Layers")
        self.layers_box = QVBoxLayout(layers)
        self.truth_check = QCheckBox("Ground truth (T)")
        self.truth_check.setChecked(True)
        self.truth_check.setIcon(swatch(TRUTH_COLOUR))
        self.layers_box.addWidget(self.truth_check)
        self.source_checks: dict[str, QCheckBox] = {}
        self.no_sources = QLabel("No predicted masks in this database yet (avvp-studio avs predict … --db, or avs "
                                 "train --db … --predict val,test).")
        self.no_sources.setWordWrap(True)
        self.no_sources.setStyleSheet(f"color: {muted};")
        self.layers_box.addWidget(self.no_sources)
        form = QFormLayout()
        self.chosen_combo = QComboBox()
        sources, self.sources = self.sources, []
        for source in sources:
            self._add_source_widgets(source)
        self.chosen_combo.setToolTip("The prediction that IoU, the worst-IoU order and Accept / Reject refer to")
        form.addRow("Review", self.chosen_combo)
        opacity = QHBoxLayout()
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(DEFAULT_OPACITY)
        self.opacity_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.opacity_label = QLabel(f"{DEFAULT_OPACITY} %")
        self.opacity_label.setMinimumWidth(40)
        opacity.addWidget(self.opacity_slider, 1)
        opacity.addWidget(self.opacity_label)
        form.addRow("Opacity", opacity)
        self.mode_combo = QComboBox()
        for value, text in MODES.items():
            self.mode_combo.addItem(text, value)
        self.mode_combo.setCurrentIndex(self.mode_combo.findData("mixed"))
        self.mode_combo.setToolTip("How masks are drawn (C cycles)")
        form.addRow("Draw", self.mode_combo)
        self.layers_box.addLayout(form)
        self.heat_check = QCheckBox("Probability map (H)")
        self.heat_check.setToolTip("The predicted probability per pixel (dark: low, yellow: high) instead of its "
                                   "p ≥ 0.5 mask; S4 / MS3 predictions only (AVSS stores classes)")
        self.layers_box.addWidget(self.heat_check)
        rv.addWidget(layers)

        frame_box = QGroupBox("This frame")
        fv = QVBoxLayout(frame_box)
        self.iou_label = QLabel("")
        big = self.iou_label.font()
        big.setPointSizeF(big.pointSizeF() * 1.9)
        big.setBold(True)
        self.iou_label.setFont(big)
        fv.addWidget(self.iou_label)
        self.iou_detail = QLabel("")
        self.iou_detail.setWordWrap(True)
        self.iou_detail.setStyleSheet(f"color: {muted};")
        fv.addWidget(self.iou_detail)
        self.clip_iou_label = QLabel("")
        self.clip_iou_label.setWordWrap(True)
        fv.addWidget(self.clip_iou_label)
        self.legend_label = QLabel("")
        self.legend_label.setWordWrap(True)
        self.legend_label.setTextFormat(Qt.TextFormat.RichText)
        fv.addWidget(self.legend_label)
        rv.addWidget(frame_box)

        decide_box = QGroupBox("Decision on the reviewed prediction")
        dv = QVBoxLayout(decide_box)
        buttons = QHBoxLayout()
        self.accept_button = QPushButton(f"{DECISION_MARK['accepted']} Accept (A)")
        self.reject_button = QPushButton(f"{DECISION_MARK['rejected']} Reject (R)")
        for button, status in ((self.accept_button, "accepted"), (self.reject_button, "rejected")):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setStyleSheet(f"QPushButton {{ color: {DECISION_COLOUR[status]}; font-weight: bold; "
                                 "padding: 6px 10px; }")
            buttons.addWidget(button)
        dv.addLayout(buttons)
        self.decision_label = QLabel("")
        self.decision_label.setWordWrap(True)
        dv.addWidget(self.decision_label)
        self.advance_check = QCheckBox("Next frame after a decision")
        self.advance_check.setChecked(True)
        dv.addWidget(self.advance_check)
        undo_row = QHBoxLayout()
        self.undo_button, self.redo_button = QToolButton(), QToolButton()
        for button, text in ((self.undo_button, "Undo (Ctrl+Z)"), (self.redo_button, "Redo (Ctrl+Shift+Z)")):
            button.setText(text)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            undo_row.addWidget(button)
        undo_row.addStretch(1)
        dv.addLayout(undo_row)
        rv.addWidget(decide_box)
        rv.addStretch(1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(centre)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 5)
        splitter.setStretchFactor(2, 0)
        splitter.setSizes([380, 820, 330])
        self.setCentralWidget(splitter)
        self.saved_label = QLabel("")
        self.statusBar().addPermanentWidget(self.saved_label)

    def _build_actions(self) -> None:
        bar = self.menuBar()
        edit = bar.addMenu("&Edit")
        undo = self.review.undo_stack.createUndoAction(self, "Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.review.undo_stack.createRedoAction(self, "Redo")
        redo_keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Redo)
        redo_keys += [QKeySequence(k) for k in ("Ctrl+Shift+Z", "Ctrl+Y") if QKeySequence(k) not in redo_keys]
        redo.setShortcuts(redo_keys)
        edit.addAction(undo)
        edit.addAction(redo)
        self.actions["undo"], self.actions["redo"] = undo, redo
        self.undo_button.clicked.connect(undo.trigger)
        self.redo_button.clicked.connect(redo.trigger)
        self.review.undo_stack.canUndoChanged.connect(self.undo_button.setEnabled)
        self.review.undo_stack.canRedoChanged.connect(self.redo_button.setEnabled)
        self.undo_button.setEnabled(False)
        self.redo_button.setEnabled(False)
        menus = {"mask": bar.addMenu("&Mask"), "frame": bar.addMenu("&Frame"), "clip": bar.addMenu("&Clip")}
        for name, menu, text, keys, handler in (
            ("accept", "mask", "Accept the reviewed prediction", "A", lambda: self.decide("accepted")),
            ("reject", "mask", "Reject the reviewed prediction", "R", lambda: self.decide("rejected")),
            ("truth", "mask", "Show ground truth", "T", self.truth_check.toggle),
            ("predictions", "mask", "Show the reviewed prediction", "P", self._toggle_chosen),
            ("mode", "mask", "Next drawing mode (filled, outlined, both)", "C", self._cycle_mode),
            ("heat", "mask", "Probability map", "H", self.heat_check.toggle),
            ("prev_frame", "frame", "Previous frame", "Left", lambda: self.step(-1)),
            ("next_frame", "frame", "Next frame", "Right", lambda: self.step(1)),
            ("first_frame", "frame", "First frame", "Home", lambda: self.set_frame(0)),
            ("last_frame", "frame", "Last frame", "End", lambda: self.set_frame(self.frame_count() - 1)),
            ("play", "frame", "Play / pause with sound", "Space", self.toggle_play),
            ("next_clip", "clip", "Next clip", "PgDown", lambda: self.step_clip(1)),
            ("prev_clip", "clip", "Previous clip", "PgUp", lambda: self.step_clip(-1)),
            ("close", "clip", "Close window", "Ctrl+W", self.close),
        ):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(keys))
            action.triggered.connect(handler)
            menus[menu].addAction(action)
            self.addAction(action)
            self.actions[name] = action

    def _connect(self) -> None:
        self.subset_combo.currentIndexChanged.connect(self.apply_filter)
        self.split_combo.currentIndexChanged.connect(self.apply_filter)
        self.search_edit.textChanged.connect(self.apply_filter)
        self.order_combo.currentIndexChanged.connect(self.apply_filter)
        self.table.selectionModel().currentRowChanged.connect(self._on_row)
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        self.play_button.clicked.connect(self.toggle_play)
        self.slider.valueChanged.connect(lambda value: self.set_frame(value))
        self.strip.frame_clicked.connect(self.set_frame)
        for box in (self.truth_check, self.heat_check, *self.source_checks.values()):
            box.toggled.connect(self.refresh_frame)
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        self.mode_combo.currentIndexChanged.connect(self.refresh_frame)
        self.chosen_combo.currentIndexChanged.connect(self._on_chosen)
        self.accept_button.clicked.connect(lambda: self.decide("accepted"))
        self.reject_button.clicked.connect(lambda: self.decide("rejected"))
        self.clock.ticked.connect(self._on_tick)
        self.clock.playing_changed.connect(self._on_playing)
        self.clock.notice.connect(self._show_sound)
        self.review.changed.connect(self._on_decision_changed)
        self.review.conflict.connect(self._on_conflict)
        self.review.failed.connect(self._say)
        self.review.saved.connect(self.saved_label.setText)
        self.review.applied.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.review.show_requested.connect(self.bring_on_screen)

    def _fill_filters(self) -> None:
        with QSignalBlocker(self.subset_combo), QSignalBlocker(self.split_combo):
            self.subset_combo.addItem("All subsets", None)
            for subset in sorted({r.subset for r in self.records}, key=("s4", "ms3", "avss").index):
                self.subset_combo.addItem(subset.upper(), subset)
            self.split_combo.addItem("All splits", None)
            for split in ("train", "val", "test"):
                self.split_combo.addItem(split.capitalize(), split)

    # ---- the clip list ---------------------------------------------------------------------
    @property
    def chosen(self) -> str | None:
        """The prediction source reviewed (IoU, order, decisions)."""
        return self.chosen_combo.currentData()

    def listed(self) -> list[AVSRecord]:
        """The records passing the filters, in the chosen order."""
        subset, split = self.subset_combo.currentData(), self.split_combo.currentData()
        text = self.search_edit.text().strip().lower()
        records = [r for r in self.records if (subset is None or r.subset == subset)
                   and (split is None or r.split == split) and (not text or text in r.name.lower())]
        if self.order_combo.currentData() == "worst" and self.scores is not None:
            order = worst_first([r.id for r in records], self.scores)
            records = [self._by_id[i] for i in order]
        return records

    def clip_ids(self) -> list[int]:
        return [r.id for r in self.model.records]

    def apply_filter(self) -> None:
        records = self.listed()
        self.model.set_records(records)
        self.count_label.setText(f"{len(records)} of {len(self.records)} clips")
        if not records:
            self.record = None
            self.clock.clear()
            self.strip.set_frames([], [], [], [])
            self.view.set_placeholder(empty_message(self.db_label) if not self.records else
                                      "No clip passes the filters: widen them (subset, split, search).")
            self._update_panel()
            return
        current = self.record.id if self.record is not None else None
        row = self.model.row_of(current) if current is not None else None
        self.select_row(row if row is not None else 0)

    def select_row(self, row: int) -> None:
        index = self.model.index(row, 0)
        self.table.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.table.scrollTo(index)

    def select_clip(self, clip_id: int) -> None:
        row = self.model.row_of(clip_id)
        if row is not None:
            self.select_row(row)
        else:  # not listed (filtered out): shown all the same
            self.open_clip(clip_id)

    def step_clip(self, delta: int) -> None:
        if not self.model.records:
            return
        row = self.model.row_of(self.record.id) if self.record is not None else None
        target = 0 if row is None else min(len(self.model.records) - 1, max(0, row + delta))
        self.select_row(target)

    def _on_row(self, current, _previous) -> None:
        if current.isValid():
            record = self.model.records[current.row()]
            if self.record is None or record.id != self.record.id:
                self.open_clip(record.id)

    # ---- one clip --------------------------------------------------------------------------
    def open_clip(self, clip_id: int, frame: int = 0) -> None:
        record = self._by_id[clip_id]
        self.clock.pause()
        self.banner.hide()
        self.record = record
        self.frames_rgb, self._frame_errors, self._enlarged = [], {}, {}
        for k, path in enumerate(record.frame_paths):
            try:
                self.frames_rgb.append(read_image(path))
            except (DataFileError, OSError, cv2.error) as exc:
                self.frames_rgb.append(None)
                self._frame_errors[k] = f"Frame {k + 1} cannot be shown: {exc}"
        self._load_masks()
        self._load_sound(record)
        subset_line = f"{record.subset.upper()} · {record.split} · {record.name}"
        if record.category:
            subset_line += f" ({record.category})"
        self.title_label.setText(f"{subset_line} · {record.frames} frames, one per second")
        for index, (source, box) in enumerate(self.source_checks.items()):
            box.setIcon(swatch(None if record.subset == "avss" else prediction_colour(index)))
            present = bool(self.masks.get(source))
            box.setToolTip(f"{source}" + ("" if present else ": no mask of this clip"))
        self.truth_check.setIcon(swatch(None if record.subset == "avss" else TRUTH_COLOUR))
        with QSignalBlocker(self.slider):
            self.slider.setRange(0, max(0, record.frames - 1))
        self._compute_frame_ious()
        self.frame = -1
        self.set_frame(min(frame, record.frames - 1))

    def _load_masks(self) -> None:
        record = self.record
        self.masks = load_masks(self.engine, record.id)
        self._arrays = {}
        self.review.note(record.id, record.frames, self.masks.get(REVIEWED, {}))

    def _load_sound(self, record: AVSRecord) -> None:
        self.clock.clear()
        self.clock.duration = float(record.frames)
        wav = record.path(record.files.get("wav"))
        if wav is None:
            self.clock.set_audio(None, 0, "No sound: this clip has only the log-mel .pkl, no wav; "
                                          "frames step on a timer")
        else:
            try:
                samples, rate = read_wav(wav)
            except ValueError as exc:
                self.clock.set_audio(None, 0, f"No sound: {exc}; frames step on a timer")
            else:
                self.clock.set_audio(samples, rate)
        self._show_sound(self.clock.audio_notice)

    def _show_sound(self, notice: str | None) -> None:
        if notice:
            text = notice if "timer" in notice else f"{notice}; frames step on a timer"
            self.sound_label.setText(text)
        else:
            wav = self.record.files.get("wav") if self.record is not None else None
            self.sound_label.setText(f"Sound: {Path(wav).name if wav else ''} (Space plays the frames with it)")

    def frame_count(self) -> int:
        return self.record.frames if self.record is not None else 0

    def _row(self, source: str | None, frame: int | None = None) -> MaskRow | None:
        if source is None:
            return None
        row = self.masks.get(source, {}).get(self.frame if frame is None else frame)
        return row if row is not None and row.png is not None else None

    def mask_array(self, source: str, frame: int | None = None) -> np.ndarray | None:
        frame = self.frame if frame is None else frame
        row = self._row(source, frame)
        if row is None:
            return None
        key = (source, frame)
        if key not in self._arrays:
            self._arrays[key] = row.array()
        return self._arrays[key]

    def _compute_frame_ious(self) -> None:
        self.frame_ious = [row_iou(self._row(self.chosen, k), self._row(TRUTH, k)) for k in range(self.frame_count())]
        thumbs = []
        for rgb in self.frames_rgb:
            if rgb is None:
                thumbs.append(None)
            else:
                h, w = rgb.shape[:2]
                scale = THUMB_HEIGHT / h
                thumbs.append(cv2.resize(rgb, (max(1, int(round(w * scale))), THUMB_HEIGHT),
                                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
        self.strip.set_frames(thumbs, [r.iou if r else None for r in self.frame_ious], self._decisions(),
                              [self._row(TRUTH, k) is not None for k in range(self.frame_count())])

    def _decisions(self) -> list[str | None]:
        if self.record is None:
            return []
        out = []
        for k in range(self.record.frames):
            decision = self.review.decision(self.record.id, k)
            out.append(decision[0] if decision else None)
        return out

    # ---- frames ----------------------------------------------------------------------------
    def set_frame(self, frame: int, seek: bool = True) -> None:
        if self.record is None:
            return
        frame = min(self.record.frames - 1, max(0, int(frame)))
        if seek:
            self.clock.seek(float(frame))
        if frame == self.frame:
            return
        self.frame = frame
        with QSignalBlocker(self.slider):
            self.slider.setValue(frame)
        self.strip.set_current(frame)
        self.frame_label.setText(f"frame {frame + 1} / {self.record.frames} · {frame}–{frame + 1} s")
        self.refresh_frame()
        self.frame_shown.emit(frame)

    def step(self, delta: int) -> None:
        self.set_frame(self.frame + delta)

    def toggle_play(self) -> None:
        if self.record is not None:
            self.clock.toggle()

    def _on_tick(self, t: float) -> None:
        if self.record is not None:
            self.set_frame(min(self.record.frames - 1, int(t)), seek=False)

    def _on_playing(self, playing: bool) -> None:
        self.play_button.setIcon(transport_icon("pause" if playing else "play", text_colour(current_is_dark())))

    # ---- drawing ---------------------------------------------------------------------------
    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def _on_opacity(self, value: int) -> None:
        self.opacity_label.setText(f"{value} %")
        self.refresh_frame()

    def _toggle_chosen(self) -> None:
        box = self.source_checks.get(self.chosen)
        if box is not None:
            box.toggle()

    def _cycle_mode(self) -> None:
        self.mode_combo.setCurrentIndex((self.mode_combo.currentIndex() + 1) % self.mode_combo.count())

    def layers(self) -> list[Layer]:
        """What is drawn over the current frame, bottom first: the truth, then each prediction shown."""
        mode = self.mode_combo.currentData()
        layers = []
        truth = self._row(TRUTH)
        if self.truth_check.isChecked() and truth is not None:
            layers.append(Layer(TRUTH, self.mask_array(TRUTH), truth.kind,
                                None if truth.kind == "classes" else TRUTH_COLOUR,
                                "contour" if mode == "contours" else "fill"))
        for index, (source, box) in enumerate(self.source_checks.items()):
            row = self._row(source)
            if not box.isChecked() or row is None:
                continue
            heat = self.heat_check.isChecked() and source == self.chosen and row.kind == "probability"
            style = "heat" if heat else "fill" if mode == "filled" else "contour"
            layers.append(Layer(source, self.mask_array(source), row.kind,
                                None if row.kind == "classes" else prediction_colour(index), style))
        return layers

    def refresh_frame(self) -> None:
        """Draw the current frame with its layers and update the side panel."""
        if self.record is None:
            return
        rgb = self.frames_rgb[self.frame] if self.frame < len(self.frames_rgb) else None
        if rgb is None:
            self.composite = None
            self.view.set_placeholder(self._frame_errors.get(self.frame, "No frame"))
        else:
            if self.frame not in self._enlarged:
                k = factor(*rgb.shape[:2])
                self._enlarged[self.frame] = (enlarge_frame(rgb, k), k)
            big, k = self._enlarged[self.frame]
            self.composite, self.composite_factor = render(big, k, self.layers(), self.opacity()), k
            self.view.set_composite(self.composite, k)
        self.view.set_caption(f"{self.frame + 1} / {self.record.frames}")
        self._update_panel()

    def _update_panel(self) -> None:
        record = self.record
        chosen = self.chosen
        can_heat = record is not None and chosen is not None and any(
            r.kind == "probability" for r in self.masks.get(chosen, {}).values())
        self.heat_check.setEnabled(can_heat)
        if record is None:
            self.current_iou = None
            for label in (self.iou_label, self.iou_detail, self.clip_iou_label, self.legend_label,
                          self.decision_label, self.frame_label, self.title_label):
                label.setText("")
            self.view.set_badge(None)
            self.accept_button.setEnabled(False)
            self.reject_button.setEnabled(False)
            return
        truth, pred = self._row(TRUTH), self._row(chosen)
        self.current_iou = result = row_iou(pred, truth)
        if chosen is None:
            self.iou_label.setText("IoU —")
            self.iou_detail.setText("No prediction to compare with the truth.")
        elif result is None:
            self.iou_label.setText("IoU —")
            why = "no ground truth on this frame" if truth is None else f"no {short(chosen)} mask on this frame"
            self.iou_detail.setText(why.capitalize() + ".")
        else:
            self.iou_label.setText(f"IoU {result.iou:.3f}")
            if pred.kind == "classes" and truth.kind == "classes":
                names = self._names()
                self.iou_detail.setText(f"{short(chosen)} vs truth: mean over {len(result.classes)} classes present "
                                        f"in either ({', '.join(names[c] for c in result.classes)})")
            else:
                both = " (both empty: they agree)" if result.union == 0 else ""
                self.iou_detail.setText(f"{short(chosen)} (p ≥ 0.5) vs truth: {result.inter:,} px ∩ / "
                                        f"{result.union:,} px ∪{both}")
        self.iou_label.setStyleSheet(f"color: {iou_colour(result.iou if result else None).name()};")
        scored = [r.iou for r in self.frame_ious if r is not None]
        self.clip_iou_label.setText(f"Clip mean IoU {np.mean(scored):.3f} over {len(scored)} frame(s) with truth"
                                    if scored else "Clip mean IoU —")
        self.legend_label.setText(self._legend() if record.subset == "avss" else "")
        decision = self.review.decision(record.id, self.frame)
        if decision is None:
            self.view.set_badge(None)
            self.decision_label.setText("Not decided yet.")
        else:
            status, origin = decision
            self.view.set_badge(status, f"{status} · {short(origin)}")
            who = self.masks.get(REVIEWED, {}).get(self.frame)
            by = f" by {who.updated_by}" if who is not None and who.updated_by and who.status == status else ""
            self.decision_label.setText(f"{DECISION_MARK[status]} {status.capitalize()}: {short(origin)}{by}")
        ok = pred is not None
        self.accept_button.setEnabled(ok)
        self.reject_button.setEnabled(ok)

    def _names(self) -> list[str]:
        root = self.record.root
        if root not in self._class_names:
            self._class_names[root] = class_names(root)
        return self._class_names[root]

    def _legend(self) -> str:
        """AVSS: the classes in the shown masks of this frame, each in its palette colour."""
        names = self._names()
        where: dict[int, list[str]] = {}
        for layer in self.layers():
            if layer.kind == "classes":
                for cls in np.unique(layer.array).tolist():
                    if cls:
                        where.setdefault(int(cls), []).append("truth" if layer.name == TRUTH else short(layer.name))
        if not where:
            return "No sounding class in the masks shown."
        rows = []
        for cls, layers in sorted(where.items()):
            r, g, b = (int(c) for c in PALETTE[cls])
            rows.append(f'<span style="color: rgb({r},{g},{b}); font-size: 14pt;">■</span> '
                        f"{names[cls]} <span style='color: gray;'>({', '.join(layers)})</span>")
        return "<br>".join(rows)

    # ---- decisions -------------------------------------------------------------------------
    def decide(self, status: str) -> bool:
        """Accept or reject the reviewed prediction on the current frame (stored now, undoable)."""
        record, chosen = self.record, self.chosen
        if record is None:
            return False
        if chosen is None or self._row(chosen) is None:
            self._say("Nothing to decide: " + ("no prediction in this database" if chosen is None else
                                               f"{short(chosen)} has no mask on frame {self.frame + 1}"))
            return False
        current = self.review.decision(record.id, self.frame)
        if current == (status, chosen):
            self._say(f"Frame {self.frame + 1} is already {status} ({short(chosen)}); Ctrl+Z undoes it")
            return False
        if current is not None and current[1] != chosen and not self.confirm_replace(current, status, chosen):
            return False
        frame = self.frame
        done = self.review.decide(record.id, frame, status, chosen)
        if done:
            self.banner.hide()
            if self.advance_check.isChecked() and self.frame == frame:
                self.step(1)
        return done

    def confirm_replace(self, current: tuple[str, str], status: str, chosen: str) -> bool:
        """A decision made on another run's mask is replaced only when the person says so."""
        answer = QMessageBox.question(
            self, "Replace a decision on another run?",
            f"Frame {self.frame + 1} is {current[0]} for {short(current[1])}.\n\nReplace that with {status} for "
            f"{short(chosen)} (the run now in the Review box)?")
        return answer == QMessageBox.StandardButton.Yes

    def _on_decision_changed(self, clip_id: int, frame: int) -> None:
        record = self._by_id.get(clip_id)
        if record is None:
            return
        self.model.set_reviewed(clip_id, self._reviewed_now(record))
        if self.record is not None and self.record.id == clip_id:
            self.masks[REVIEWED] = load_masks(self.engine, clip_id).get(REVIEWED, {})
            self.strip.set_decisions(self._decisions())
            self._update_panel()

    def _reviewed_now(self, record: AVSRecord) -> dict[int, str]:
        """frame -> accepted / rejected, as this window knows the clip's decisions."""
        out = {}
        for k in range(record.frames):
            decision = self.review.decision(record.id, k)
            if decision:
                out[k] = decision[0]
        return out

    def _on_conflict(self, clip_id: int, frame: int, text: str) -> None:
        """Someone else decided on the frame: say so plainly, and show what is stored now."""
        if self.record is not None and self.record.id == clip_id:
            keep = self.frame
            self._load_masks()
            self._compute_frame_ious()
            self.frame = -1
            self.set_frame(keep, seek=False)
        self.notice_label.setText(f"Frame {frame + 1} of {self._by_id[clip_id].name}: {text}")
        self.banner.show()
        self.statusBar().showMessage(text, 15000)

    def bring_on_screen(self, clip_id: int, frame: int) -> None:
        """An undo/redo of another clip or frame: show it first."""
        if self.record is None or self.record.id != clip_id:
            self.select_clip(clip_id)
        self.set_frame(frame)

    def _say(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    # ---- the reviewed prediction and the worst-IoU order ----------------------------------
    def _add_source_widgets(self, source: str) -> QCheckBox:
        box = QCheckBox(f"Prediction {short(source)}")
        box.setToolTip(f"{source}: the predicted mask (p ≥ 0.5), or its classes (AVSS)")
        box.setIcon(swatch(prediction_colour(len(self.sources))))
        box.setChecked(True)
        self.sources.append(source)
        self.source_checks[source] = box
        self.layers_box.addWidget(box)
        self.no_sources.hide()
        self.chosen_combo.addItem(short(source), source)
        self.chosen_combo.setCurrentIndex(len(self.sources) - 1)
        return box

    def show_source(self, source: str) -> None:
        """A prediction stored after the window opened (a training run from the panel): add its layer (shown,
        off when other predictions are there, so it does not cover the one under review) and say so; the
        prediction under review stays the one the person chose (the first one is reviewed)."""
        reviewing = self.chosen
        if source not in self.source_checks:
            box = self._add_source_widgets(source)
            box.toggled.connect(self.refresh_frame)
            if reviewing is not None:
                box.setChecked(False)
                self.chosen_combo.setCurrentIndex(self.sources.index(reviewing))
        if self.record is not None:
            self.open_clip(self.record.id, self.frame)  # its masks again, with the new source's
        self._say(f"New predicted masks: {short(source)} (layer added; the Review box chooses the run you decide on)")
        self._on_chosen()

    def _on_chosen(self) -> None:
        if self.record is not None:
            self._compute_frame_ious()
            self.refresh_frame()
        self.start_scoring()

    def start_scoring(self) -> BackgroundTask | None:
        """Every clip's IoU of the reviewed prediction, in a worker thread (the list keeps working)."""
        for task in self._tasks:
            task.cancel()
        if not self.records:
            return None
        engine, source, ids = self.engine, self.chosen, [r.id for r in self.records]
        task = BackgroundTask(lambda progress: clip_scores(engine, source, ids, progress), "Scoring clips", self)
        task.progressed.connect(self._on_score_progress)
        task.succeeded.connect(self._on_scores)
        task.failed.connect(self._on_score_failed)
        task.finished.connect(self._on_task_finished)
        self._tasks.add(task)
        self.model.set_scores(self.scores if self.scores is not None and self.scores.source == source else None,
                              scoring=source is not None)
        self.score_bar.setRange(0, len(ids))
        self.score_bar.setValue(0)
        self.score_bar.setVisible(source is not None)
        task.start()
        return task

    def _on_score_progress(self, _stage: str, done: int, total: int, _eta: float) -> None:
        self.score_bar.setRange(0, max(1, total))
        self.score_bar.setValue(done)

    def _on_scores(self, scores: QueueScores) -> None:
        if scores.source != self.chosen:
            return  # a finished run for a prediction no longer reviewed
        self.scores = scores
        for clip_id in self.review.clips():  # decisions made while the worker read: as this window knows them
            record = self._by_id.get(clip_id)
            if record is not None:
                scores.reviewed[clip_id] = self._reviewed_now(record)
        self.score_bar.hide()
        self.model.set_scores(scores)
        if self.order_combo.currentData() == "worst":
            self.apply_filter()
        self.scores_ready.emit(scores)

    def _on_score_failed(self, message: str) -> None:
        self.score_bar.hide()
        self.model.set_scores(self.scores)
        self._say(f"Scoring the clips failed: {message.splitlines()[0]}")

    def _on_task_finished(self) -> None:
        task = self.sender()
        self._tasks.discard(task)
        if task is not None:
            task.deleteLater()

    def scoring(self) -> bool:
        return any(t.isRunning() for t in self._tasks)

    # ---- closing ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Playback stopped, the worker cancelled and ended (a running QThread must not be destroyed)."""
        self.clock.pause()
        for task in list(self._tasks):
            task.cancel()
            task.wait(10000)

    def closeEvent(self, event) -> None:
        self.stop()
        super().closeEvent(event)


# ---- the main window's menu entry ----------------------------------------------------------

MENU_TEXT = "Segmentation masks…"


def refresh_avs_action(window) -> QAction:
    """Enabled when the main window's database holds AVS clips; otherwise its tip says how to get some."""
    action: QAction = window.avs_action
    count, problem = count_avs_clips(getattr(window, "engine", None))
    action.setEnabled(count > 0)
    label = window.db_label.text() if hasattr(window, "db_label") else ""
    tip = (f"Masks of the {count} audio-visual segmentation clips over their frames: truth and predictions, IoU, "
           "accept / reject" if count else (problem or empty_message(label)).replace("\n\n", "\n"))
    action.setToolTip(tip)
    action.setStatusTip(tip.splitlines()[0] if count else "No AVS clips: avvp-studio avs demo, then avs import")
    return action


def open_avs_window(window) -> AVSWindow | None:
    """The segmentation window of the main window's database (one; raised when open)."""
    engine = window.engine
    count, problem = count_avs_clips(engine)
    label = window.db_label.text() if hasattr(window, "db_label") else ""
    if not count:
        QMessageBox.information(window, "No segmentation clips", problem or empty_message(label))
        return None
    existing: AVSWindow | None = getattr(window, "avs_window", None)
    if existing is not None and existing.engine is not engine:
        existing.close()
        existing.deleteLater()
        existing = None
    if existing is None:
        annotator = getattr(getattr(window, "prefs", None), "annotator", None) or "anonymous"
        existing = AVSWindow(engine, annotator, window, db_label=label)
        window.avs_window = existing
    existing.show()
    existing.raise_()
    existing.activateWindow()
    return existing


def install_avs_menu(window, menu: QMenu) -> QAction:
    """Add "Segmentation masks…" to `menu` of the main window (checked each time the menu opens)."""
    action = QAction(MENU_TEXT, window)
    action.triggered.connect(lambda: open_avs_window(window))
    menu.addAction(action)
    menu.setToolTipsVisible(True)
    window.avs_action = action
    window.avs_window = None
    menu.aboutToShow.connect(lambda: refresh_avs_action(window))
    action.setEnabled(False)
    QTimer.singleShot(0, window, lambda: refresh_avs_action(window))  # once the window has its database
    return action
