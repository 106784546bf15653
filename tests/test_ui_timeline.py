"""Timeline editor: hit tests, mouse editing, header selection, rows, diff colours, derived row, speed."""
from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from annotation.taxonomy import COLOURS  # noqa: E402
from ui import theme  # noqa: E402
from ui.timeline import TrackTimeline  # noqa: E402
from ui.timeline_panel import TimelinePanel  # noqa: E402
from ui.timeline_render import CellPalette, tooltip_text  # noqa: E402



SPEECH, DOG, SINGING, CLAPPING = 0, 3, 11, 24
WEAK = [SPEECH, DOG]


def _grid(*runs: tuple[int, int, int]) -> np.ndarray:
    grid = np.zeros((25, 10), dtype=np.uint8)
    for cls, onset, offset in runs:
        grid[cls, onset:offset] = 1
    return grid


@pytest.fixture
def grids() -> dict[str, np.ndarray]:
    return {
        "current": _grid((SPEECH, 0, 6), (DOG, 5, 9)),
        "pseudo": _grid((SPEECH, 1, 7), (DOG, 4, 9)),
        "truth": _grid((SPEECH, 0, 6), (DOG, 5, 9), (SINGING, 6, 8)),
    }


@pytest.fixture(params=[True, False], ids=["dark", "light"])
def dark(request, qapp) -> bool:
    previous = qapp.property("avvp_dark")
    theme.apply_theme(qapp, dark=request.param)
    yield request.param
    if previous is not None:
        theme.apply_theme(qapp, dark=bool(previous))


def _show(qtbot, widget, width: int = 900):
    qtbot.addWidget(widget)
    widget.resize(width, widget.height())
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def timeline(qtbot, grids) -> TrackTimeline:
    widget = TrackTimeline("audio")
    widget.set_clip(WEAK, grids["current"], {"pseudo": grids["pseudo"], "truth": grids["truth"]})
    return _show(qtbot, widget)


def _centre(widget: TrackTimeline, cls: int, seg: int) -> QPoint:
    rect = widget.cell_rect(cls, seg)
    assert rect.isValid()
    centre = rect.center()
    assert widget.childAt(centre) is None  # a real click lands on the timeline, not on a child
    return centre


def _pixel(widget, point: QPoint) -> QColor:
    return widget.grab().toImage().pixelColor(point)


def _close(a: QColor, b: QColor | str, tol: int = 6) -> bool:
    b = QColor(b)
    return all(abs(x - y) <= tol for x, y in zip(a.getRgb()[:3], b.getRgb()[:3]))


def test_click_toggles_one_cell_and_moves_cursor(qtbot, timeline):
    edits, cursors = [], []
    timeline.edit_requested.connect(lambda cells, value: edits.append((cells, value)))
    timeline.cursor_moved.connect(lambda c, s: cursors.append((c, s)))
    QTest.mouseClick(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _centre(timeline, DOG, 0))
    QTest.mouseClick(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _centre(timeline, SPEECH, 2))
    assert edits == [([(DOG, 0)], 1), ([(SPEECH, 2)], 0)]
    assert cursors == [(DOG, 0), (SPEECH, 2)]
    assert timeline.cursor() == (SPEECH, 2)


def test_drag_over_four_cells_emits_one_request_and_previews(qtbot, timeline):
    edits = []
    timeline.edit_requested.connect(lambda cells, value: edits.append((cells, value)))
    QTest.mousePress(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _centre(timeline, DOG, 0))
    for seg in (1, 2, 3):
        QTest.mouseMove(timeline, _centre(timeline, DOG, seg))
    assert edits == []
    assert _close(_pixel(timeline, _centre(timeline, DOG, 2)), COLOURS[DOG])  # painted before release
    QTest.mouseRelease(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _centre(timeline, DOG, 3))
    assert edits == [([(DOG, 0), (DOG, 1), (DOG, 2), (DOG, 3)], 1)]


def test_fast_drag_fills_skipped_cells_and_session_applies(qtbot, timeline, grids):
    current = grids["current"].copy()

    def apply(cells, value):
        for cls, seg in cells:
            current[cls, seg] = value
        timeline.set_current(current)

    timeline.edit_requested.connect(apply)
    with qtbot.waitSignal(timeline.edit_requested) as blocker:
        QTest.mousePress(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _centre(timeline, SPEECH, 2))
        QTest.mouseMove(timeline, _centre(timeline, SPEECH, 5))
        QTest.mouseRelease(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _centre(timeline, SPEECH, 5))
    assert blocker.args == [[(SPEECH, 2), (SPEECH, 3), (SPEECH, 4), (SPEECH, 5)], 0]
    assert current[SPEECH].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(timeline.current(), current)


def test_header_click_seeks_and_shift_click_or_drag_selects(qtbot, timeline):
    with qtbot.waitSignal(timeline.segment_clicked) as clicked:
        QTest.mouseClick(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, timeline.header_rect(2).center())
    assert clicked.args == [2]
    with qtbot.waitSignal(timeline.selection_changed) as selected:
        QTest.mouseClick(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, timeline.header_rect(5).center())
    assert selected.args == [2, 5]
    assert timeline.selection() == (2, 5)

    QTest.mousePress(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, timeline.header_rect(9).center())
    assert timeline.selection() is None  # a plain click starts over
    with qtbot.waitSignal(timeline.selection_changed) as dragged:
        QTest.mouseMove(timeline, timeline.header_rect(7).center())
    QTest.mouseRelease(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, timeline.header_rect(7).center())
    assert dragged.args == [7, 9]
    timeline.clear_selection()
    assert timeline.selection() is None


def test_collapsed_others_show_only_rows_with_positives(qtbot, timeline, grids):
    assert timeline.others_collapsed()
    assert timeline.visible_rows() == [SPEECH, DOG, SINGING]  # Singing is on in truth
    assert not timeline.cell_rect(CLAPPING, 0).isValid()
    timeline.set_current(grids["current"] | _grid((CLAPPING, 0, 1)))  # a new positive appears
    assert timeline.visible_rows() == [SPEECH, DOG, SINGING, CLAPPING]
    QTest.mouseClick(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, timeline.toggle_rect().center())
    assert not timeline.others_collapsed()
    assert timeline.visible_rows()[:2] == WEAK and len(timeline.visible_rows()) == 25
    timeline.set_others_collapsed(True)
    assert timeline.visible_rows() == [SPEECH, DOG, SINGING, CLAPPING]


def test_diff_mode_colours(qtbot, dark, grids):
    widget = TrackTimeline("audio")
    widget.set_clip(WEAK, grids["current"], {"pseudo": grids["pseudo"]})
    widget.set_view_mode("diff")
    widget.set_diff_reference("pseudo")
    _show(qtbot, widget)
    assert widget._palette.dark is dark  # followed ui.theme
    palette = CellPalette.build(dark)
    image = widget.grab().toImage()

    def at(cls, seg):
        return image.pixelColor(_centre(widget, cls, seg))

    assert _close(at(SPEECH, 3), COLOURS[SPEECH])  # on in both
    assert _close(at(SPEECH, 0), theme.ADDED)  # only in current
    removed = at(SPEECH, 6)  # only in pseudo: hatched tint
    assert _close(removed, QColor(*palette.removed_fill[:3])) or _close(removed, theme.REMOVED)
    assert _close(at(SPEECH, 9), theme.grid_background(dark))  # off in both

    widget.set_view_mode("side")
    image = widget.grab().toImage()
    assert _close(at(SPEECH, 0), COLOURS[SPEECH]) and _close(at(SPEECH, 6), theme.grid_background(dark))


def test_non_editable_tracks_emit_nothing(qtbot, grids):
    for widget in (TrackTimeline("audio", editable=False), TrackTimeline("audio_visual", editable=True)):
        widget.set_clip(WEAK, grids["current"], {})
        _show(qtbot, widget)
        emitted = []
        widget.edit_requested.connect(lambda *a: emitted.append(a))
        widget.cursor_moved.connect(lambda *a: emitted.append(a))
        QTest.mouseClick(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _centre(widget, DOG, 0))
        QTest.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _centre(widget, DOG, 1))
        QTest.mouseMove(widget, _centre(widget, DOG, 3))
        QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _centre(widget, DOG, 3))
        assert emitted == [] and not widget.is_editable()


def test_tooltip_names_class_segment_and_layers(grids):
    text = tooltip_text(DOG, 3, grids["current"], {"pseudo": grids["pseudo"], "truth": None})
    assert text == "Dog · segment 3 (3–4 s): off in current, off in pseudo"
    text = tooltip_text(SPEECH, 0, grids["current"], {"pseudo": grids["pseudo"], "truth": grids["truth"]})
    assert text == "Speech · segment 0 (0–1 s): on in current, off in pseudo, on in truth"


def test_set_current_is_cheap(qtbot, timeline, grids):
    grid = grids["current"].copy()
    times = []
    for i in range(60):
        grid[WEAK[i % 2], i % 10] ^= 1
        start = time.perf_counter()
        timeline.set_current(grid)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.05  # the budget is 5 ms; this only catches the pathological


def test_panel_derives_av_reemits_and_tracks_the_active_timeline(qtbot, grids):
    panel = TimelinePanel()
    audio, visual = grids["current"], _grid((DOG, 2, 10))
    panel.set_clip(WEAK, {"audio": audio, "visual": visual}, {"audio": {"pseudo": grids["pseudo"]}})
    _show(qtbot, panel, 980)
    av = panel.timeline("audio_visual")
    np.testing.assert_array_equal(av.current(), audio & visual)
    audio2 = audio.copy()
    audio2[DOG, 2:5] = 1
    panel.set_current("audio", audio2)
    np.testing.assert_array_equal(av.current(), audio2 & visual)
    assert av.layers()["pseudo"] is None  # no visual pseudo: no derived one

    vis = panel.timeline("visual")
    assert panel.active_track() == "audio"
    with qtbot.waitSignal(panel.edit_requested) as edit:
        QTest.mouseClick(vis, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _centre(vis, SPEECH, 1))
    assert edit.args == ["visual", [(SPEECH, 1)], 1]
    assert panel.active_track() == "visual" and vis.is_active()
    with qtbot.waitSignal(panel.selection_changed) as sel:
        QTest.mouseClick(vis, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, vis.header_rect(1).center())
        QTest.mouseClick(vis, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, vis.header_rect(3).center())
    assert sel.args == ["visual", 1, 3]
    with pytest.raises(ValueError):
        panel.set_active_track("audio_visual")

    # shared view settings keep the columns of the three tracks aligned
    panel.set_view_mode("diff")
    panel.set_others_collapsed(False)
    xs = {t: panel.timeline(t).cell_rect(DOG, 4).x() for t in ("audio", "visual", "audio_visual")}
    assert len(set(xs.values())) == 1
    assert all(panel.timeline(t).view_mode() == "diff" for t in xs)


def test_panel_screenshot_dark_and_light(qtbot, qapp, dark, grids):
    panel = TimelinePanel()
    panel.set_shortcuts({SPEECH: "1", DOG: "2", SINGING: "Q"})
    visual = _grid((DOG, 2, 10), (SPEECH, 2, 4))
    panel.set_clip(
        WEAK, {"audio": grids["current"], "visual": visual},
        {"audio": {"pseudo": grids["pseudo"], "truth": grids["truth"], "prediction": grids["truth"]},
         "visual": {"pseudo": _grid((DOG, 3, 10)), "truth": _grid((DOG, 3, 10))}},
    )
    panel.set_playhead_segment(4)
    panel.timeline("audio").set_cursor(DOG, 2)
    panel.timeline("visual").set_selection(6, 8)
    _show(qtbot, panel, 980)
    panel.resize(980, 560)
    qapp.processEvents()
    name = "/tmp/timeline.png" if dark else "/tmp/timeline_light.png"
    pixmap = panel.grab()
    assert pixmap.save(name)
    assert pixmap.width() == 980


def test_tooltip_event_and_live_theme_switch(qtbot, qapp, timeline):
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QHelpEvent
    from PySide6.QtWidgets import QToolTip

    centre = _centre(timeline, DOG, 5)
    qapp.sendEvent(timeline, QHelpEvent(QEvent.Type.ToolTip, centre, timeline.mapToGlobal(centre)))
    assert QToolTip.text() == ("Dog · segment 5 (5–6 s): on in current, on in pseudo, on in truth\n"
                               "Click to toggle · drag to paint")  # the hint that a click edits
    QToolTip.hideText()

    previous = qapp.property("avvp_dark")
    for dark in (True, False):
        theme.apply_theme(qapp, dark=dark)
        qtbot.waitUntil(lambda: timeline._palette.dark is dark, timeout=2000)
        assert _close(_pixel(timeline, _centre(timeline, DOG, 0)), theme.grid_background(dark))
    if previous is not None:
        theme.apply_theme(qapp, dark=bool(previous))
