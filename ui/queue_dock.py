"""The review-queue dock: filter controls, the clip table and the progress line.

The table (ui/queue_model.py) holds only queue positions and builds rows on
demand, so showing 10,000 clips costs one filter pass and one model reset. A
review or edit patches one row (`update_clip`) without re-filtering, so the row
the annotator is on stays put until the queue is refreshed or the filter changes.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDockWidget, QGridLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
    QProgressBar, QTableView, QToolButton, QVBoxLayout, QWidget,
)
from sqlalchemy import Engine

from annotation.queue import DEFAULT_FILTER, MODEL_SORTS, QueueFilter, QueueSort, ReviewQueue
from annotation.taxonomy import DISPLAY_NAMES, NUM_CLASSES
from ui.queue_model import (  # noqa: F401 (table names stay importable from here)
    CLIP, DISAGREEMENT, HEADERS, SPLIT, STATUS, STATUS_COLOURS, WEAK, WEAK_ROLE, QueueTableModel,
    WeakChipsDelegate, dot_icon, swatch_icon,
)
from ui.theme import current_is_dark, muted_text

SPLIT_CHOICES = (("Train split", "train"), ("Val split", "val"), ("Test split", "test"), ("All splits", None))
STATUS_CHOICES = (
    ("Pending", frozenset({"pending"})), ("Annotated", frozenset({"annotated"})),
    ("Out of taxonomy", frozenset({"out_of_taxonomy"})), ("Skipped", frozenset({"skipped"})), ("Any status", None),
)
SORT_CHOICES = (("Sort: clip id", "id"), ("Sort: number of weak labels", "weak_count"),
                ("Sort: A/V disagreement", "disagreement"), ("Sort: model doubt, audio", "uncertainty_audio"),
                ("Sort: model doubt, visual", "uncertainty_visual"),
                ("Sort: model vs labels", "model_disagreement"))
SEARCH_DEBOUNCE_MS = 150


class QueueDock(QDockWidget):
    """Review queue: filter + sort the clips, walk them with the arrow keys, see the progress."""

    clip_activated = Signal(int)
    filter_changed = Signal()
    emptied = Signal()  # the list shows no clip (a finished queue, or a filter nothing passes)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Review queue", parent)
        self.setObjectName("reviewQueueDock")
        self._queue = ReviewQueue()
        self._filter = DEFAULT_FILTER
        self._sort: QueueSort = "id"
        self._descending = False
        self._annotator: str | None = None
        self._engine: Engine | None = None  # the database of the model sorts' run
        self._run_source: str | None = None  # the prediction run the model sorts follow
        self._session_start = datetime.now(timezone.utc)
        self._last_emitted: int | None = None
        self._stale: set[int] = set()  # listed clips that no longer pass the filter; they go once left
        self._pinned: set[int] = set()  # clips listed although the filter hides them (until left)
        self._emptied = False  # the list showed no clip: the next one listed opens by itself
        self._build()
        self._show_filter(self._filter)
        self._apply(emit=False)
        self._emptied = False  # the empty queue of construction is not an emptied list

    # ---- construction -----------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        grid = QGridLayout()
        grid.setHorizontalSpacing(4)
        grid.setVerticalSpacing(4)

        self.split_combo = QComboBox()
        for text, _ in SPLIT_CHOICES:
            self.split_combo.addItem(text)
        self.split_combo.setToolTip("Which dataset split to list (MUG annotates the training clips)")
        self.status_combo = QComboBox()
        for text, value in STATUS_CHOICES:
            status = next(iter(value)) if value else None
            self.status_combo.addItem(dot_icon(STATUS_COLOURS[status]) if status else QIcon(), text)
        self.status_combo.setToolTip("Review status: pending clips still need a person")
        self.class_combo = QComboBox()
        self.class_combo.addItem("Any class")
        for i in range(NUM_CLASSES):
            self.class_combo.addItem(swatch_icon(i), DISPLAY_NAMES[i])
        self.class_combo.setMaxVisibleItems(16)
        self.class_combo.setToolTip("Only clips whose weak (video-level) label contains this class")
        self.empty_check = QCheckBox("Empty visual pseudo-label only")
        self.empty_check.setToolTip(
            "Only clips whose visual pseudo-label exists and is all zero: the pseudo-labeller saw nothing,\n"
            "so a person must say what is visible (the MUG manual-annotation step)"
        )
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search clip name…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setToolTip("Case-insensitive part of the clip file name (YouTube id, start, end)")
        self.sort_combo = QComboBox()
        for text, _ in SORT_CHOICES:
            self.sort_combo.addItem(text)
        self.sort_combo.setToolTip("Order of the queue; ties keep clip-id order. The model sorts follow the "
                                   "prediction run chosen above the timelines (descending: most doubtful first)")
        self.desc_button = QToolButton()
        self.desc_button.setCheckable(True)
        self.desc_button.setAutoRaise(True)
        self.desc_button.setToolTip("Descending order (largest first)")
        self.count_label = QLabel()
        self.count_label.setStyleSheet(f"color: {muted_text(current_is_dark()).name()};")

        grid.addWidget(self.split_combo, 0, 0)
        grid.addWidget(self.status_combo, 0, 1)
        grid.addWidget(self.class_combo, 1, 0, 1, 2)
        grid.addWidget(self.search_edit, 2, 0, 1, 2)
        grid.addWidget(self.empty_check, 3, 0, 1, 2)
        sort_row = QHBoxLayout()
        sort_row.setSpacing(2)
        sort_row.addWidget(self.sort_combo, 1)
        sort_row.addWidget(self.desc_button)
        sort_row.addSpacing(6)
        sort_row.addWidget(self.count_label)
        grid.addLayout(sort_row, 4, 0, 1, 2)
        layout.addLayout(grid)

        self.model = QueueTableModel(self)
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setItemDelegateForColumn(WEAK, WeakChipsDelegate(self.view))
        self.view.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.view.setShowGrid(False)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        self.view.setHorizontalScrollMode(QTableView.ScrollMode.ScrollPerPixel)
        vertical = self.view.verticalHeader()
        vertical.hide()
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # uniform rows: no per-row measuring
        vertical.setDefaultSectionSize(self.view.fontMetrics().height() + 8)
        header = self.view.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(WEAK, QHeaderView.ResizeMode.Stretch)
        char = self.view.fontMetrics().horizontalAdvance("0")
        for col, chars in ((CLIP, 22), (SPLIT, 6), (STATUS, 17), (DISAGREEMENT, 8)):
            header.resizeSection(col, char * chars)
        layout.addWidget(self.view, 1)
        # the editor owns the keyboard: these take keys only once the user clicks into them
        for widget in (self.split_combo, self.status_combo, self.class_combo, self.sort_combo, self.empty_check,
                       self.search_edit, self.view):
            widget.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.desc_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)

        self.progress_label = QLabel()
        self.progress_label.setToolTip(
            "Reviewed / all clips of the current filter (any status). Pace: your reviews of these clips\n"
            "since this queue was opened, over at most the last hour; the estimate assumes that pace."
        )
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setFixedHeight(6)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.progress_bar)
        self.setWidget(body)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DEBOUNCE_MS)
        self._search_timer.timeout.connect(self._controls_changed)
        self._pace_timer = QTimer(self)  # pace and estimate drift with the clock, even without edits
        self._pace_timer.setInterval(60_000)
        self._pace_timer.timeout.connect(self._update_progress)
        self._pace_timer.start()

        for combo in (self.split_combo, self.status_combo, self.class_combo):
            combo.currentIndexChanged.connect(self._controls_changed)
        self.sort_combo.currentIndexChanged.connect(self._sort_changed)
        self.desc_button.toggled.connect(self._sort_changed)
        self.empty_check.checkStateChanged.connect(self._empty_changed)
        self.search_edit.textChanged.connect(lambda _text: self._search_timer.start())
        self.view.selectionModel().currentRowChanged.connect(self._current_row_changed)

    # ---- public API -------------------------------------------------------------------
    def refresh_theme(self) -> None:
        """Colours from ui.theme again (after a live theme change)."""
        self.count_label.setStyleSheet(f"color: {muted_text(current_is_dark()).name()};")
        self.model.refresh_theme()
        self.view.viewport().update()

    def set_queue(self, queue: ReviewQueue) -> None:
        """Show `queue` (already loaded); the pace of the progress line counts from now."""
        self._queue = queue
        self._session_start = datetime.now(timezone.utc)
        self._emptied = False
        self._apply(emit=False)

    def set_run(self, engine, source: str | None) -> None:
        """The prediction run the model sorts follow; the list re-sorts at once. Its probabilities and
        grids are read only while a model sort is chosen (not at every start or database switch)."""
        self._engine, self._run_source = engine, source
        self._apply(emit=False)

    def _attach_run(self) -> None:
        if self._sort in MODEL_SORTS and self._engine is not None and self._queue.run != self._run_source:
            self._queue.attach_run(self._engine, self._run_source)

    def set_annotator(self, name: str | None) -> None:
        """Whose reviews set the pace (None: anyone's)."""
        self._annotator = name
        self._update_progress()

    def refresh(self) -> None:
        """Re-run the filter (e.g. after reviews); the selected clip stays selected if it still passes."""
        self._apply(emit=False)

    def update_clip(self, engine: Engine, clip_id: int) -> None:
        """After a review or edit: re-read that clip, repaint its row and the progress. A clip that no
        longer passes the filter (accepted while listing pending clips) stays while it is the one on
        screen, and leaves the list when the annotator moves on."""
        self._queue.refresh_clip(engine, clip_id)
        row = self.model.row_of(clip_id)
        if row is not None:
            self.model.refresh_row(row)
            if not self._queue.passes(clip_id, self._filter):
                self._stale.add(clip_id)
                if clip_id != self.current_clip_id():
                    self._apply(emit=False)
        self._update_progress()

    def drop_stale(self) -> None:
        """List again now: clips that left the filter (e.g. the last one just accepted) go, and an
        empty list says so (`emptied`)."""
        if self._stale:
            self._apply(emit=True)

    def progress(self):
        """The progress of the current filter (reviewed / all, any status)."""
        return self._queue.progress(self._filter, self._annotator, since=self._session_start)

    def current_clip_id(self) -> int | None:
        index = self.view.currentIndex()
        return self.model.clip_id_at(index.row()) if index.isValid() else None

    def reveal(self, clip_id: int) -> bool:
        """List and select `clip_id` even if the filter hides it (an undo brought it back on screen);
        it leaves the list when the annotator moves on, like a reviewed clip."""
        if self.select_clip(clip_id):
            return True
        if self._queue.position_of(clip_id) is None:
            return False
        self._pinned.add(clip_id)
        self._apply(emit=False)
        return self.select_clip(clip_id)

    def select_clip(self, clip_id: int) -> bool:
        """Select (and scroll to) a listed clip; False if the filter hides it."""
        row = self.model.row_of(clip_id)
        if row is None:
            return False
        self._select_row(row)
        return True

    def select_next(self) -> int | None:
        index = self.view.currentIndex()
        row = index.row() + 1 if index.isValid() else 0
        return self._select_row(row) if row < self.model.rowCount() else None

    def select_next_pending(self) -> int | None:
        """Select the next listed clip whose review is still pending (the list may show any status)."""
        index = self.view.currentIndex()
        for row in range(index.row() + 1 if index.isValid() else 0, self.model.rowCount()):
            clip_id = self.model.clip_id_at(row)
            if self._queue.row(clip_id).status == "pending":
                return self._select_row(row)
        return None

    def select_previous(self) -> int | None:
        index = self.view.currentIndex()
        row = index.row() - 1 if index.isValid() else self.model.rowCount() - 1
        return self._select_row(row) if row >= 0 else None

    def next_clip_id(self, clip_id: int | None = None) -> int | None:
        """The clip listed after `clip_id` (default: the selected one), without selecting it.

        Lets a caller remember where to go before a review changes the list.
        """
        return self._neighbour(clip_id, +1)

    def previous_clip_id(self, clip_id: int | None = None) -> int | None:
        return self._neighbour(clip_id, -1)

    def filter(self) -> QueueFilter:
        return self._filter

    def set_filter(self, flt: QueueFilter) -> None:
        self._search_timer.stop()
        self._filter = flt
        self._show_filter(flt)
        self._apply(emit=True)

    def sort(self) -> tuple[QueueSort, bool]:
        return self._sort, self._descending

    def set_sort(self, sort: QueueSort, descending: bool = False) -> None:
        keys = [value for _, value in SORT_CHOICES]
        if sort not in keys:
            raise ValueError(f"unknown sort {sort!r}; expected one of {keys}")
        with _Blocked(self.sort_combo, self.desc_button):
            self.sort_combo.setCurrentIndex(keys.index(sort))
            self.desc_button.setChecked(descending)
        self._sort_changed()

    def visible_clip_ids(self) -> list[int]:
        """The listed clips in table order (tests, "export this queue")."""
        return [self.model.clip_id_at(r) for r in range(self.model.rowCount())]

    # ---- internals --------------------------------------------------------------------
    def _neighbour(self, clip_id: int | None, step: int) -> int | None:
        clip_id = self.current_clip_id() if clip_id is None else clip_id
        row = self.model.row_of(clip_id) if clip_id is not None else None
        if row is None or not 0 <= row + step < self.model.rowCount():
            return None
        return self.model.clip_id_at(row + step)

    def _select_row(self, row: int) -> int:
        index = self.model.index(row, 0)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.view.selectionModel().setCurrentIndex(index, flags)
        self.view.scrollTo(index)
        return self.model.clip_id_at(row)

    def _current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        clip_id = self.model.clip_id_at(current.row())
        if clip_id != self._last_emitted:
            self._last_emitted = clip_id
            self.clip_activated.emit(clip_id)
        if (self._stale | self._pinned) - {clip_id}:  # moved on from a clip that left the filter: drop it now
            self._pinned &= {clip_id}
            QTimer.singleShot(0, lambda: self._apply(emit=False))

    def _apply(self, emit: bool) -> None:
        """List the clips of the filter, keeping the current one selected if it still passes; if it
        does not, the first listed clip opens; `emptied` says when none is listed."""
        keep = self.current_clip_id()
        self._attach_run()
        positions = self._queue.positions(self._filter, self._sort, self._descending, include=self._pinned)
        self._stale.clear()
        self.model.set_contents(self._queue, positions)
        restored = keep is not None and self.select_clip(keep)
        if not restored:
            self._last_emitted = None  # the clip left the list; showing it again is a new activation
            if not self.model.rowCount():
                self._emptied = True
                self.emptied.emit()
            elif keep is not None or self._emptied:  # the first listed clip replaces the one that left
                self._emptied = False
                self._select_row(0)
        self.count_label.setText(f"{len(positions):,} clip{'s' if len(positions) != 1 else ''}")
        self._update_progress()
        if emit:
            self.filter_changed.emit()

    def _update_progress(self) -> None:
        progress = self.progress()
        self.progress_label.setText(progress.summary())
        self.progress_bar.setRange(0, max(progress.total, 1))
        self.progress_bar.setValue(progress.reviewed if progress.total else 0)

    def _controls_changed(self, *_args) -> None:
        self._search_timer.stop()
        status = STATUS_CHOICES[self.status_combo.currentIndex()][1] if self.status_combo.currentIndex() < len(
            STATUS_CHOICES) else self._filter.statuses
        split = SPLIT_CHOICES[self.split_combo.currentIndex()][1] if self.split_combo.currentIndex() < len(
            SPLIT_CHOICES) else self._filter.split
        state = self.empty_check.checkState()
        empty = {Qt.CheckState.Checked: True, Qt.CheckState.Unchecked: None,
                 Qt.CheckState.PartiallyChecked: False}[state]
        cls = self.class_combo.currentIndex() - 1
        self._filter = replace(self._filter, split=split, statuses=status, empty_visual=empty,
                               class_index=cls if cls >= 0 else None, text=self.search_edit.text().strip())
        self._apply(emit=True)

    def _empty_changed(self, state: Qt.CheckState) -> None:
        if state != Qt.CheckState.PartiallyChecked and self.empty_check.isTristate():
            with _Blocked(self.empty_check):  # "non-empty only" exists only when set_filter asked for it
                self.empty_check.setTristate(False)
        self._controls_changed()

    def _sort_changed(self, *_args) -> None:
        self._sort = SORT_CHOICES[self.sort_combo.currentIndex()][1]
        self._descending = self.desc_button.isChecked()
        self.desc_button.setArrowType(Qt.ArrowType.DownArrow if self._descending else Qt.ArrowType.UpArrow)
        self.desc_button.setToolTip("Descending (largest first); click for ascending" if self._descending
                                    else "Ascending (smallest first); click for descending")
        self._apply(emit=True)

    def _show_filter(self, flt: QueueFilter) -> None:
        """Put `flt` into the controls without triggering them; odd values get an extra combo entry."""
        widgets = (self.split_combo, self.status_combo, self.class_combo, self.empty_check, self.search_edit,
                   self.sort_combo, self.desc_button)
        with _Blocked(*widgets):
            _choose(self.split_combo, SPLIT_CHOICES, flt.split if flt.split != "all" else None,
                    lambda v: f"Split: {v}")
            _choose(self.status_combo, STATUS_CHOICES, flt.statuses,
                    lambda v: ", ".join(sorted(s.replace("_", " ") for s in v)))
            self.class_combo.setCurrentIndex(0 if flt.class_index is None else flt.class_index + 1)
            self.empty_check.setTristate(flt.empty_visual is False)
            self.empty_check.setCheckState({True: Qt.CheckState.Checked, None: Qt.CheckState.Unchecked,
                                            False: Qt.CheckState.PartiallyChecked}[flt.empty_visual])
            self.empty_check.setToolTip(self.empty_check.toolTip().split("\n\n")[0] + (
                "\n\nPartly checked: only clips whose visual pseudo-label is NOT empty" if flt.empty_visual is False
                else ""))
            self.search_edit.setText(flt.text)
            self.sort_combo.setCurrentIndex([v for _, v in SORT_CHOICES].index(self._sort))
            self.desc_button.setChecked(self._descending)
            self.desc_button.setArrowType(Qt.ArrowType.DownArrow if self._descending else Qt.ArrowType.UpArrow)


def _choose(combo: QComboBox, choices, value, label) -> None:
    """Select the entry for `value`; a value the fixed entries cannot express gets its own entry."""
    while combo.count() > len(choices):
        combo.removeItem(combo.count() - 1)
    values = [v for _, v in choices]
    if value in values:
        combo.setCurrentIndex(values.index(value))
    else:
        combo.addItem(label(value))
        combo.setCurrentIndex(combo.count() - 1)


class _Blocked:
    """Block the signals of some widgets for a `with` block."""

    def __init__(self, *widgets):
        self._widgets = widgets

    def __enter__(self):
        self._old = [w.blockSignals(True) for w in self._widgets]

    def __exit__(self, *exc):
        for widget, old in zip(self._widgets, self._old):
            widget.blockSignals(old)
