"""The segmentation window (ui/avs_view.py): masks over AVS frames, IoU, stepping, the worst-IoU order,
accept / reject with undo and conflicts, AVSS class colours, the empty-database message. Offscreen."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

from annotation.avs_demo import build_avs_demo
from annotation.avs_store import (
    MaskConflictError,
    avs_clips,
    decide,
    import_avsbench,
    load_masks,
    store_mask_predictions,
)
from annotation.avsbench import palette
from annotation.db import open_database
from ui import audio_output, media_clock
from ui.audio_output import NO_DEVICE
from ui.avs_render import TRUTH_COLOUR, blend, contour_alpha, heat_colour, prediction_colour
from ui.avs_view import AVSWindow, empty_message, open_avs_window, refresh_avs_action
from ui.workers import BackgroundTask

SIZE = 96
RUN = "prediction:run1"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("avsui")
    build_avs_demo(root / "s4", "s4", clips=8, size=SIZE, seed=1)
    build_avs_demo(root / "avss", "avss", clips=6, size=64, seed=2)
    return root


@pytest.fixture(autouse=True)
def no_sound_device(monkeypatch):
    """The same answer on every machine: no audio output device (frames step on a timer)."""
    monkeypatch.setattr(media_clock, "audio_unavailable_reason", lambda: NO_DEVICE)
    monkeypatch.setattr(audio_output, "audio_unavailable_reason", lambda: NO_DEVICE)


def shifted_predictions(engine, subset: str, skip_first: bool = True) -> dict[str, np.ndarray]:
    """Per clip the truth moved right by a clip-dependent shift, p = 0.9 there and 0.1 elsewhere; the first
    train clip gets no prediction. Stored as prediction:run1."""
    preds = {}
    records = avs_clips(engine, subset)
    skipped = next(r.id for r in records if r.split == "train") if skip_first else None
    for i, record in enumerate(records):
        if record.id == skipped:
            continue
        truth = load_masks(engine, record.id)["truth"]
        blank = np.zeros_like(next(iter(truth.values())).array())
        stack = []
        for k in range(record.frames):
            t = truth[k].array() if k in truth else blank
            stack.append(np.where(np.roll(t, 9 + 2 * (i % 4), axis=1) > 0, 0.9, 0.1))
        preds[record.name] = np.stack(stack)
    store_mask_predictions(engine, "run1", subset, preds, "probability")
    return preds


@pytest.fixture
def s4_engine(tmp_path, demo_root):
    engine = open_database(str(tmp_path / "s4.sqlite"))
    import_avsbench(engine, demo_root / "s4", "s4")
    shifted_predictions(engine, "s4")
    return engine


def make_window(qtbot, engine, **kwargs) -> AVSWindow:
    window = AVSWindow(engine, "ann", sound=False, **kwargs)
    qtbot.addWidget(window)
    window.resize(1300, 850)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(lambda: not window.scoring(), timeout=10000)
    window.advance_check.setChecked(False)
    return window


@pytest.fixture
def window(qtbot, s4_engine) -> AVSWindow:
    return make_window(qtbot, s4_engine)


def press(window: AVSWindow, key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    QTest.keyClick(QApplication.focusWidget() or window, key, modifier)


def open_test_clip(window: AVSWindow):
    """A test clip (ground truth on all 5 frames) that has a prediction, on frame 0."""
    record = next(r for r in window.records if r.split == "test" and load_masks(window.engine, r.id).get(RUN))
    window.select_clip(record.id)
    window.set_frame(0)
    return record


def interior(mask: np.ndarray, margin: int = 2) -> np.ndarray:
    """(y, x) pixels of `mask` at least `margin` pixels from its edge."""
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    points = np.argwhere(eroded > 0)
    assert len(points), "no interior pixel to check"
    return points


def screen(window: AVSWindow, y: int, x: int) -> np.ndarray:
    """The colour the view shows at frame pixel (x, y), grabbed from the widget."""
    image = window.view.grab().toImage()
    point = window.view.widget_point(x, y) * image.devicePixelRatio()
    colour = image.pixelColor(point.x(), point.y())
    return np.array([colour.red(), colour.green(), colour.blue()])


def composite_at(window: AVSWindow, y: int, x: int) -> np.ndarray:
    k = window.composite_factor
    return window.composite[y * k + k // 2, x * k + k // 2].astype(int)


def frame_at(window: AVSWindow, y: int, x: int) -> np.ndarray:
    big, k = window._enlarged[window.frame]
    return big[y * k + k // 2, x * k + k // 2].astype(int)


def hand_iou(pred_u8: np.ndarray, truth01: np.ndarray) -> float:
    p, t = pred_u8 >= 128, truth01 == 1
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else np.logical_and(p, t).sum() / union


# ---------------------------------------------------------------- drawing


def test_truth_and_prediction_pixels_on_screen_and_toggles_and_opacity_change_them(window):
    record = open_test_clip(window)
    truth = window.mask_array("truth")
    pred = window.mask_array(RUN) >= 128
    window.mode_combo.setCurrentIndex(window.mode_combo.findData("filled"))
    window.opacity_slider.setValue(100)
    only_truth = tuple(interior(truth.astype(bool) & ~pred)[0])
    only_pred = tuple(interior(pred & ~truth.astype(bool))[0])
    nothing = tuple(interior(~(pred | truth.astype(bool)), margin=4)[0])
    assert composite_at(window, *only_truth).tolist() == list(TRUTH_COLOUR)
    assert composite_at(window, *only_pred).tolist() == list(prediction_colour(0))
    assert composite_at(window, *nothing).tolist() == frame_at(window, *nothing).tolist()
    # what the widget shows is what was composed (smooth scaling: interior pixels, small tolerance)
    for point, colour in ((only_truth, TRUTH_COLOUR), (only_pred, prediction_colour(0))):
        assert np.abs(screen(window, *point) - np.array(colour)).max() <= 6

    window.truth_check.setChecked(False)  # truth off: the frame shows through
    assert composite_at(window, *only_truth).tolist() == frame_at(window, *only_truth).tolist()
    assert np.abs(screen(window, *only_truth) - frame_at(window, *only_truth)).max() <= 6
    window.source_checks[RUN].setChecked(False)
    assert composite_at(window, *only_pred).tolist() == frame_at(window, *only_pred).tolist()
    window.truth_check.setChecked(True)
    window.source_checks[RUN].setChecked(True)

    window.opacity_slider.setValue(40)
    assert window.opacity_label.text() == "40 %"
    expected = blend(frame_at(window, *only_truth), TRUTH_COLOUR, 0.4)
    assert np.abs(composite_at(window, *only_truth) - expected).max() <= 1
    assert np.abs(screen(window, *only_truth) - expected).max() <= 6
    assert record.subset == "s4"


def test_contours_and_probability_map(window):
    open_test_clip(window)
    truth = window.mask_array("truth").astype(bool)
    values = window.mask_array(RUN)
    pred = values >= 128
    window.opacity_slider.setValue(80)
    window.mode_combo.setCurrentIndex(window.mode_combo.findData("contours"))
    k = window.composite_factor
    big_truth = np.repeat(np.repeat(truth & ~pred, k, 0), k, 1)
    inside = cv2.erode(big_truth.astype(np.uint8), np.ones((9, 9), np.uint8))
    yy, xx = np.argwhere(inside)[0]
    assert window.composite[yy, xx].tolist() == window._enlarged[window.frame][0][yy, xx].tolist()  # not filled
    edge = np.argwhere(np.repeat(np.repeat(truth, k, 0), k, 1))[0]  # first truth pixel: on its top edge
    expected = blend(window._enlarged[window.frame][0][tuple(edge)], TRUTH_COLOUR, contour_alpha(0.8))
    assert np.abs(window.composite[tuple(edge)] - expected).max() <= 1

    window.mode_combo.setCurrentIndex(window.mode_combo.findData("filled"))
    assert window.heat_check.isEnabled()
    window.truth_check.setChecked(False)
    window.heat_check.setChecked(True)
    y, x = interior(pred)[0]
    v = int(values[y, x])
    expected = blend(frame_at(window, y, x), heat_colour(v), 0.8 * v / 255)
    assert np.abs(composite_at(window, y, x) - expected).max() <= 1
    y, x = interior(~pred & ~truth, margin=4)[0]  # p = 0.1 outside: faint
    v = int(values[y, x])
    assert v == 26
    expected = blend(frame_at(window, y, x), heat_colour(v), 0.8 * v / 255)
    assert np.abs(composite_at(window, y, x) - expected).max() <= 1


def test_iou_shown_equals_a_hand_computation(window):
    record = open_test_clip(window)
    masks = load_masks(window.engine, record.id)
    for frame in range(record.frames):
        window.set_frame(frame)
        expected = hand_iou(masks[RUN][frame].array(), masks["truth"][frame].array())
        assert window.current_iou.iou == pytest.approx(expected)
        shown = float(re.search(r"IoU ([0-9.]+)", window.iou_label.text()).group(1))
        assert shown == pytest.approx(expected, abs=5e-4)
    mean = np.mean([hand_iou(masks[RUN][k].array(), masks["truth"][k].array()) for k in range(record.frames)])
    assert f"{mean:.3f}" in window.clip_iou_label.text()
    assert window.model.mean_iou(record.id) == pytest.approx(mean)
    # S4 train clips: truth on frame 1 only; the others say so
    train = next(r for r in window.records if r.split == "train" and load_masks(window.engine, r.id).get(RUN))
    window.select_clip(train.id)
    window.set_frame(2)
    assert window.current_iou is None and "no ground truth" in window.iou_detail.text().lower()


# ---------------------------------------------------------------- stepping and playing


def test_frame_stepping_with_keys_slider_strip_and_play_on_a_timer_without_sound(qtbot, window):
    record = open_test_clip(window)
    assert window.frame == 0
    press(window, Qt.Key.Key_Right)
    press(window, Qt.Key.Key_Right)
    assert window.frame == 2 and window.slider.value() == 2 and "frame 3 / 5" in window.frame_label.text()
    press(window, Qt.Key.Key_Left)
    assert window.frame == 1
    press(window, Qt.Key.Key_End)
    assert window.frame == record.frames - 1
    press(window, Qt.Key.Key_Right)  # stays on the last frame
    assert window.frame == record.frames - 1
    window.slider.setValue(0)
    assert window.frame == 0
    rect = window.strip.cell_rect(3)
    QTest.mouseClick(window.strip, Qt.MouseButton.LeftButton, pos=rect.center().toPoint())
    assert window.frame == 3
    assert "frames step on a timer" in window.sound_label.text()  # made silent (sound=False)
    window.set_frame(0)
    window.clock.set_speed(2.0)  # half a second per frame
    with qtbot.waitSignal(window.frame_shown, timeout=3000) as shown:
        press(window, Qt.Key.Key_Space)
    assert shown.args == [1] and window.clock.is_playing()
    press(window, Qt.Key.Key_Space)
    assert not window.clock.is_playing()
    press(window, Qt.Key.Key_PageDown)  # next clip in the list
    assert window.record.id != record.id and window.frame == 0


def test_no_audio_device_is_said_and_frames_still_play(qtbot, s4_engine):
    window = AVSWindow(s4_engine, "ann")  # with sound, as opened from the main window
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: not window.scoring(), timeout=10000)
    assert window.sound_label.text().startswith("No sound: no audio output device")
    assert "timer" in window.sound_label.text()
    window.clock.set_speed(2.0)
    with qtbot.waitSignal(window.frame_shown, timeout=3000):
        window.toggle_play()
    window.toggle_play()


# ---------------------------------------------------------------- the worst-IoU queue


def test_worst_iou_order_is_computed_in_the_background(qtbot, window):
    engine = window.engine
    expected = {}
    for record in avs_clips(engine, "s4"):
        masks = load_masks(engine, record.id)
        ious = [hand_iou(masks[RUN][k].array(), masks["truth"][k].array())
                for k in masks.get("truth", {}) if k in masks.get(RUN, {})]
        expected[record.id] = np.mean(ious) if ious else None
    assert sum(v is None for v in expected.values()) == 1  # the clip without a prediction
    with qtbot.waitSignal(window.scores_ready, timeout=10000):
        task = window.start_scoring()
        assert isinstance(task, BackgroundTask) and task.isRunning()  # a worker thread; the GUI goes on
    window.order_combo.setCurrentIndex(window.order_combo.findData("worst"))
    order = window.clip_ids()
    scored = sorted((v, i) for i, v in expected.items() if v is not None)
    assert order[:-1] == [i for _, i in scored]
    assert expected[order[-1]] is None
    assert window.model.data(window.model.index(len(order) - 1, 3)) == "—"
    for row, clip_id in enumerate(order[:-1]):
        assert window.model.data(window.model.index(row, 3)) == f"{expected[clip_id]:.3f}"
    assert window.record.id == order[0] or window.model.row_of(window.record.id) is not None


# ---------------------------------------------------------------- decisions


def reviewed(engine, clip_id: int, frame: int):
    """The frame's decision row, None when undecided (no row, or a withdrawn decision: status None)."""
    row = load_masks(engine, clip_id).get("reviewed", {}).get(frame)
    return row if row is not None and row.status is not None else None


def test_accept_reject_are_stored_at_once_and_undo_redo_go_through_the_store(window):
    record = open_test_clip(window)
    engine = window.engine
    pred = load_masks(engine, record.id)[RUN][0].array()
    press(window, Qt.Key.Key_A)
    row = reviewed(engine, record.id, 0)
    assert (row.status, row.origin, row.updated_by) == ("accepted", RUN, "ann")
    assert np.array_equal(row.array(), (pred >= 128).astype(np.uint8))  # the accepted mask itself
    assert window.view.badge == ("accepted", "accepted · run1") and window.strip.decisions[0] == "accepted"
    press(window, Qt.Key.Key_R)
    assert reviewed(engine, record.id, 0).status == "rejected"
    assert window.strip.decisions[0] == "rejected"
    press(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert reviewed(engine, record.id, 0).status == "accepted"
    press(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert reviewed(engine, record.id, 0) is None and window.view.badge is None
    press(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier)
    assert reviewed(engine, record.id, 0).status == "accepted"
    window.reject_button.click()
    assert reviewed(engine, record.id, 0).status == "rejected"
    assert window.model.data(window.model.index(window.model.row_of(record.id), 4)) == f"1/{record.frames}"

    # with "next frame after a decision": A on frame 1 moves to frame 2; undo of another clip's frame
    # brings that clip back on screen first
    window.advance_check.setChecked(True)
    window.set_frame(1)
    press(window, Qt.Key.Key_A)
    assert window.frame == 2 and reviewed(engine, record.id, 1).status == "accepted"
    window.step_clip(1)
    assert window.record.id != record.id
    press(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.record.id == record.id and window.frame == 1
    assert reviewed(engine, record.id, 1) is None


def test_a_conflicting_decision_is_said_and_the_frame_shows_what_is_stored(window):
    record = open_test_clip(window)
    engine = window.engine
    decide(engine, record.id, 0, "rejected", RUN, 0, "bob")  # another annotator, after the window read it
    window.accept_button.click()
    assert window.banner.isVisible()
    text = window.notice_label.text()
    assert "changed meanwhile" in text and "bob" in text and "Not saved" in text
    row = reviewed(engine, record.id, 0)
    assert (row.status, row.updated_by) == ("rejected", "bob")  # nothing overwritten
    assert window.view.badge[0] == "rejected" and window.strip.decisions[0] == "rejected"
    assert window.review.undo_stack.count() == 0
    # now the window knows bob's version: deciding again works
    window.accept_button.click()
    assert reviewed(engine, record.id, 0).status == "accepted" and not window.banner.isVisible()

    # an undo after someone else changed the frame: refused, said, nothing overwritten
    version = reviewed(engine, record.id, 0).version
    decide(engine, record.id, 0, "rejected", RUN, version, "carol")
    window.actions["undo"].trigger()
    assert window.banner.isVisible() and "carol" in window.notice_label.text()
    assert reviewed(engine, record.id, 0).updated_by == "carol"
    with pytest.raises(MaskConflictError):
        decide(engine, record.id, 0, None, RUN, version, "ann")  # the store itself refuses the stale version

    # an undo after the window re-read the frame that someone else changed: refused too (never a silent
    # overwrite of a colleague's decision the window has only just shown)
    window.set_frame(3)
    window.accept_button.click()
    row = reviewed(engine, record.id, 3)
    decide(engine, record.id, 3, "rejected", RUN, row.version, "dave")
    window.step_clip(1)
    window.select_clip(record.id)  # read again: dave's decision is shown
    assert window.review.decision(record.id, 3) == ("rejected", RUN)
    window.actions["undo"].trigger()
    assert "Not undone" in window.notice_label.text() and "dave" in window.notice_label.text()
    assert reviewed(engine, record.id, 3).updated_by == "dave" and window.frame == 3


# ---------------------------------------------------------------- AVSS


def test_avss_class_colours_and_class_iou(qtbot, tmp_path, demo_root):
    engine = open_database(str(tmp_path / "avss.sqlite"))
    import_avsbench(engine, demo_root / "avss", "avss")
    preds = {}
    for i, record in enumerate(avs_clips(engine, "avss")):
        truth = load_masks(engine, record.id)["truth"]
        preds[record.name] = np.stack([np.roll(truth[k].array(), 2 + i, axis=1) for k in range(record.frames)])
    store_mask_predictions(engine, "run1", "avss", preds, "classes")
    window = make_window(qtbot, engine)
    record = next(r for r in window.records if r.category == "v2")
    window.select_clip(record.id)
    masks = load_masks(engine, record.id)
    frame = next(k for k in range(record.frames) if len(np.unique(masks["truth"][k].array())) > 2)
    window.set_frame(frame)
    truth, pred = masks["truth"][frame].array(), masks[RUN][frame].array()
    window.source_checks[RUN].setChecked(False)
    window.mode_combo.setCurrentIndex(window.mode_combo.findData("filled"))
    window.opacity_slider.setValue(100)
    colours = palette()
    for cls in np.unique(truth)[1:]:
        y, x = interior(truth == cls)[0]
        assert composite_at(window, y, x).tolist() == colours[cls].tolist()
        assert np.abs(screen(window, y, x) - colours[cls]).max() <= 6
    assert colours[1].tolist() == [128, 0, 0]  # AVSBench's palette
    assert "■" in window.legend_label.text()
    names = [n for n in window._names() if n != "background"]
    assert any(name in window.legend_label.text() for name in names[:6])
    # IoU: the mean over the classes present in either, background included
    present = np.union1d(np.unique(truth), np.unique(pred))
    hand = np.mean([np.logical_and(truth == c, pred == c).sum() / np.logical_or(truth == c, pred == c).sum()
                    for c in present])
    assert window.current_iou.iou == pytest.approx(hand)
    assert f"IoU {hand:.3f}" == window.iou_label.text()
    assert window.heat_check.isEnabled() is False  # classes: no probability map
    window.source_checks[RUN].setChecked(True)
    window.truth_check.setChecked(False)
    y, x = interior(pred == np.unique(pred)[1])[0]
    assert composite_at(window, y, x).tolist() == colours[np.unique(pred)[1]].tolist()


# ---------------------------------------------------------------- the main window's entry


def test_empty_database_message_and_menu_entry(qtbot, tmp_path, demo_root, monkeypatch):
    from ui.main_window import MainWindow
    from ui.preferences import Preferences

    db = str(tmp_path / "empty.sqlite")
    engine = open_database(db)
    prefs = Preferences(tmp_path / "settings.ini")
    prefs.annotator = "ann"
    main = MainWindow(engine, prefs, db)
    qtbot.addWidget(main)
    main.team.timer.stop()
    action = refresh_avs_action(main)
    assert action.text() == "Segmentation masks…" and action in main.menuBar().actions()[3].menu().actions()
    assert not action.isEnabled()
    assert "avvp-studio avs demo" in action.toolTip() and "avvp-studio avs import" in action.toolTip()
    told = []
    monkeypatch.setattr(QMessageBox, "information", lambda *args: told.append(args[2]))
    assert open_avs_window(main) is None
    assert "no audio-visual segmentation" in told[0] and "avvp-studio avs demo" in told[0] and db in told[0]
    empty = AVSWindow(engine, "ann", sound=False)
    qtbot.addWidget(empty)
    assert empty.view.placeholder == empty_message() and "avs import" in empty.view.placeholder

    shutil.copytree(demo_root / "s4", tmp_path / "s4")
    import_avsbench(engine, tmp_path / "s4", "s4")
    main.menuBar().actions()[3].menu().aboutToShow.emit()  # checked each time the Model menu opens
    assert action.isEnabled() and "8 audio-visual segmentation clips" in action.toolTip()
    action.trigger()
    opened = main.avs_window
    assert opened is not None and opened.isVisible() and len(opened.records) == 8
    qtbot.waitUntil(lambda: not opened.scoring(), timeout=10000)
    assert open_avs_window(main) is opened  # one window, raised again
    opened.close()


def test_a_prediction_stored_while_the_window_is_open_gets_its_layer(qtbot, tmp_path, demo_root):
    engine = open_database(str(tmp_path / "late.sqlite"))
    import_avsbench(engine, demo_root / "s4", "s4")
    window = make_window(qtbot, engine)
    assert window.sources == [] and window.no_sources.isVisibleTo(window)
    window.open_clip(window.records[0].id)
    shifted_predictions(engine, "s4", skip_first=False)  # as a training run from the panel stores them
    window.show_source("prediction:run1")
    qtbot.waitUntil(lambda: not window.scoring(), timeout=10000)
    assert window.sources == ["prediction:run1"] and window.chosen == "prediction:run1"
    assert window.source_checks["prediction:run1"].isChecked() and not window.no_sources.isVisibleTo(window)
    assert "prediction:run1" in window.masks


def test_a_new_run_does_not_take_over_the_review_nor_replace_decisions_unasked(qtbot, window, monkeypatch):
    engine = window.engine
    window.open_clip(next(r.id for r in window.records if r.split == "test"))
    assert window.decide("accepted")
    record = window.record
    store_mask_predictions(engine, "run2", "s4", {record.name: np.zeros((5, SIZE, SIZE), np.float32)}, "probability")
    window.show_source("prediction:run2")
    assert window.chosen == "prediction:run1" and not window.source_checks["prediction:run2"].isChecked()
    window.chosen_combo.setCurrentIndex(window.sources.index("prediction:run2"))
    window.set_frame(0)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.No)
    assert not window.decide("rejected")  # frame 1 was accepted for run1: replacing it needs a yes
    assert asked and reviewed(engine, record.id, 0).origin == "prediction:run1"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert window.decide("rejected")
    assert (reviewed(engine, record.id, 0).status, reviewed(engine, record.id, 0).origin) == ("rejected",
                                                                                              "prediction:run2")
