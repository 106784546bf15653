"""Pseudo-labels from the window (issue 13, item 4): Model > Generate pseudo-labels… runs `avvp-studio
pseudo-label ... --events` in a separate process through the shared runner (here a stand-in script that
speaks the same events and, like the real command, stores the set in the database), and the timelines'
pseudo-source picker shows one source at a time on both tracks, remembered across clips."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from annotation.db import open_database
from annotation.demo import build_demo
from annotation.grid import weak_grid
from annotation.importer import import_llp
from annotation.store import LabelStore
from ui.main_window import NEXT_PSEUDO_KEY, MainWindow
from ui.preferences import Preferences
from ui.pseudo_dialog import PseudoLabelDialog, PseudoRequest, quality_html
from ui.timeline import TimelinePanel

QUALITY = {split: {level: {k: 40.0 + i + (10 if split == "test" else 0)
                           for i, k in enumerate(("audio", "visual", "audio_visual", "type", "event"))}
                   for level in ("segment", "event")} for split in ("val", "test")}

# The stand-in for `avvp-studio pseudo-label`: argv[1] is the mode, then the real command line.
FAKE = textwrap.dedent('''
    import argparse, json, signal, sys, time
    mode, argv = sys.argv[1], sys.argv[2:]
    print("argv " + json.dumps(argv), file=sys.stderr, flush=True)
    assert argv[0] == "pseudo-label" and "--events" in argv, argv
    parser = argparse.ArgumentParser()
    for flag in ("--data", "--method", "--name", "--db", "--device", "--thresholds", "--generator", "--annotator"):
        parser.add_argument(flag)
    parser.add_argument("--events", action="store_true")
    args = parser.parse_args(argv[1:])
    say = lambda **e: print(json.dumps(e), flush=True)
    if mode == "error":
        print("Traceback (most recent call last): a line of the log", file=sys.stderr, flush=True)
        say(event="error", message=f"{args.data}/CLIP/features: no such folder")
        sys.exit(2)
    if mode == "slow":
        if "stubborn" in argv:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        say(event="start", method=args.method, name=args.name, clips=1000)
        try:
            for i in range(1000):
                say(event="progress", stage="scoring", done=i, total=1000)
                time.sleep(0.05)
        except KeyboardInterrupt:
            print("stopped cleanly, nothing stored", file=sys.stderr, flush=True)
            sys.exit(130)
        sys.exit(0)
    import numpy as np
    from annotation.db import open_database
    from annotation.grid import weak_grid
    from annotation.store import LabelStore
    store = LabelStore(open_database(args.db))
    clips = store.clips()
    say(event="start", method=args.method, name=args.name, clips=len(clips))
    for i, clip in enumerate(clips):
        for k, track in enumerate(("audio", "visual")):
            grid = np.roll(weak_grid(clip.weak), 1 + k, axis=1)  # gated by the weak label, shifted in time
            source = "pseudo:" + args.name
            store.save_track(clip.id, track, source, grid, store.track(clip.id, track, source).version, args.annotator)
        say(event="progress", stage="storing", done=i + 1, total=len(clips))
    say(event="done", written=len(clips), stored=len(clips), quality=QUALITY, out=args.data + "/pseudo/" + args.name)
''').replace("QUALITY", repr(QUALITY))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return build_demo(tmp_path_factory.mktemp("pseudo") / "demo", clips=12, seed=5, videos=False).out_dir


@pytest.fixture
def db(tmp_path, project) -> str:
    url = str(tmp_path / "studio.sqlite")
    import_llp(open_database(url), project)
    return url


@pytest.fixture
def fake(tmp_path) -> Path:
    path = tmp_path / "fake_pseudo_label.py"
    path.write_text(FAKE)
    return path


@pytest.fixture
def dialog(qtbot, db, project, fake) -> PseudoLabelDialog:
    widget = PseudoLabelDialog(open_database(db), db, "ann")
    qtbot.addWidget(widget)
    widget.program = (sys.executable, str(fake), "ok")
    return widget


def run(qtbot, dialog: PseudoLabelDialog, timeout: int = 60_000) -> tuple[str, int, str]:
    with qtbot.waitSignal(dialog.runner.finished, timeout=timeout) as blocker:
        assert dialog.start(), dialog.summary.text()
    return tuple(blocker.args)


def zs_grid(clip, track: str) -> np.ndarray:
    """The stand-in's labels (what FAKE stores)."""
    return np.roll(weak_grid(clip.weak), 1 + ("audio", "visual").index(track), axis=1)


# ---------------------------------------------------------------- the dialog
def test_the_form_becomes_one_pseudo_label_command_for_either_method(dialog, project, db, tmp_path):
    assert dialog.folder.currentText() == str(project)  # the database's imported folder
    assert [dialog.device.itemData(i) for i in range(2)] == ["auto", "cpu"]
    dialog.name.setText("zs-valor")
    assert not dialog.form.isRowVisible(dialog._rows["ear"][-1])  # no device for zero-shot: it runs on the CPU
    assert dialog.request().argv(python="PY")[len(dialog.program):] == [  # automatic thresholds: the command's
        "pseudo-label", "--data", str(project.resolve()), "--method", "zero-shot", "--name", "zs-valor",
        "--db", db, "--events", "--annotator", "ann"]
    dialog.thresholds.setCurrentIndex(dialog.thresholds.findData("valor"))
    zero_shot = dialog.request()
    assert zero_shot.argv(python="PY")[len(dialog.program):] == [
        "pseudo-label", "--data", str(project.resolve()), "--method", "zero-shot", "--name", "zs-valor",
        "--thresholds", "valor", "--db", db, "--events", "--annotator", "ann"]
    dialog.program = None
    assert dialog.request().argv(python="PY")[:4] == ["PY", "-m", "app.main", "pseudo-label"]
    dialog.thresholds.setCurrentIndex(dialog.thresholds.findData("val"))
    assert dialog.request().thresholds == "val"
    dialog.thresholds.setCurrentIndex(dialog.thresholds.findData("file"))
    assert dialog.form.isRowVisible(dialog._file_row)
    with pytest.raises(ValueError, match="thresholds file"):
        dialog.request()
    dialog.threshold_file.setText(str(tmp_path / "gone.json"))
    with pytest.raises(ValueError, match="gone.json: no such file"):
        dialog.request()
    (tmp_path / "t.json").write_text("{}")
    dialog.threshold_file.setText(str(tmp_path / "t.json"))
    argv = dialog.request().argv()
    assert argv[argv.index("--thresholds") + 1] == str((tmp_path / "t.json").resolve())

    dialog.method.setCurrentIndex(dialog.method.findData("ear"))
    assert not dialog.form.isRowVisible(dialog._file_row)
    dialog.name.setText("ear")
    with pytest.raises(ValueError, match="generator"):
        dialog.request()
    run_dir = tmp_path / "gen"
    run_dir.mkdir()
    dialog.generator.setText(str(run_dir))
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    argv = dialog.request().argv(python="PY")
    assert argv[argv.index("--method") + 1] == "ear" and argv[argv.index("--generator") + 1] == str(run_dir.resolve())
    assert argv[argv.index("--device") + 1] == "cpu" and "--thresholds" not in argv
    if (Path(__file__).resolve().parents[1] / "app" / "cmd_pseudo.py").exists():  # the real command accepts them
        from app.cli import build_parser
        from app.cmd_pseudo import _check_options

        for request in (zero_shot, dialog.request()):
            parsed = build_parser().parse_args(request.argv(python="PY")[3:])
            assert parsed.command == "pseudo-label" and parsed.name == request.name and parsed.events
            assert (parsed.method, parsed.thresholds, parsed.generator) == (request.method, request.thresholds,
                                                                            request.generator)
            _check_options(parsed)  # no option of the other method


def test_bad_set_names_and_missing_folders_are_refused_in_the_dialog(dialog, tmp_path):
    for bad in ("a b", "-lead", "x" * 65, "zs/1", "pseudo:zs", "é"):
        dialog.name.setText(bad)
        assert not dialog.start_button.isEnabled(), bad
        assert "letters, digits" in dialog.name_note.text()
        assert not dialog.start() and "set name" in dialog.summary.text()
        assert not dialog.runner.running()
    dialog.name.setText("zs_1.b-2")
    assert dialog.start_button.isEnabled() and "pseudo:zs_1.b-2" in dialog.name_note.text()
    dialog.folder.setEditText(str(tmp_path / "nowhere"))
    assert not dialog.start() and "nowhere: no such folder" in dialog.summary.text()
    with pytest.raises(ValueError):
        PseudoRequest(data="d", db="x", name="ok", method="other").argv()


def test_a_generation_shows_progress_then_the_summary_and_announces_the_source(qtbot, dialog, db):
    dialog.name.setText("gen")
    progress: list[tuple[int, int]] = []
    dialog.runner.events.connect(lambda batch: progress.extend(
        (dialog.bar.value(), dialog.bar.maximum()) for e in batch if e["event"] == "progress"))
    with qtbot.waitSignal(dialog.source_stored, timeout=60_000) as stored:
        status, code, tail = run(qtbot, dialog)
    assert (status, code) == ("finished", 0) and stored.args == ["pseudo:gen"]
    clips = LabelStore(open_database(db)).clips()
    assert progress[-1] == (len(clips), len(clips))  # the bar followed the events
    summary = dialog.summary.text()
    assert f"{len(clips)} clips written" in summary and f"{len(clips)} stored" in summary and "pseudo:gen" in summary
    assert "gated" in summary and "weak" in summary  # the quality figures say they are of gated labels
    for split, level, key in (("test", "segment", "type"), ("val", "event", "audio")):
        assert f"{QUALITY[split][level][key]:.2f}" in summary
    assert not dialog.log_view.isVisible() and dialog.start_button.isEnabled()
    assert "replaces the stored set" in dialog.name_note.text()  # the set is stored now: the same name replaces it
    argv = json.loads(next(line for line in tail.splitlines() if line.startswith("argv "))[5:])
    assert argv[argv.index("--name") + 1] == "gen" and argv[argv.index("--db") + 1] == db


def test_the_eta_comes_from_the_stage_rate(dialog, monkeypatch):
    import ui.pseudo_dialog as module

    clock = iter([100.0, 110.0, 120.0])
    monkeypatch.setattr(module.time, "monotonic", lambda: next(clock))
    dialog._progress("scoring", 0, 30)
    assert dialog.eta.text() == ""  # no rate yet
    dialog._progress("scoring", 10, 30)  # 10 clips in 10 s: 20 left
    assert dialog.eta.text() == "about 0:20 left" and dialog.stage.text() == "scoring: 10 / 30"
    dialog._progress("storing", 0, 5)  # a new stage starts its own rate
    assert dialog.eta.text() == ""
    assert "no truth" in quality_html({"val": None, "test": QUALITY["test"]})
    marked = quality_html(QUALITY, optimistic=("val",))
    assert "val* segment" in marked and "test* " not in marked and "chose the thresholds" in marked


def test_a_failure_shows_the_message_and_the_log_tail(qtbot, dialog, fake):
    dialog.program = (sys.executable, str(fake), "error")
    dialog.name.setText("broken")
    with qtbot.assertNotEmitted(dialog.source_stored):
        status, code, _ = run(qtbot, dialog)
    assert (status, code) == ("failed", 2)
    assert "CLIP/features: no such folder" in dialog.summary.text() and "failed" in dialog.stage.text()
    assert not dialog.log_view.isHidden() and "a line of the log" in dialog.log_view.toPlainText()


@pytest.mark.parametrize("stubborn", [False, True], ids=["clean", "stubborn"])
def test_cancel_stops_the_process(qtbot, dialog, fake, monkeypatch, stubborn):
    import ui.training_runner as runner_module

    monkeypatch.setattr(runner_module, "CANCEL_GRACE_S", 0.5)
    dialog.program = (sys.executable, str(fake), "slow")
    dialog.name.setText("stubborn" if stubborn else "slow")
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000) as blocker:
        assert dialog.start()
        qtbot.waitUntil(lambda: dialog.bar.maximum() == 1000 and dialog.bar.value() > 0, timeout=20_000)
        assert dialog.cancel_button.isEnabled() and not dialog.start_button.isEnabled()
        dialog.cancel()
        assert not dialog.cancel_button.isEnabled()  # one SIGINT
    status, code, tail = blocker.args
    assert status == "stopped" and "nothing was stored" in dialog.summary.text()
    assert ("terminated" in tail) if stubborn else (code == 130 and "stopped cleanly" in tail)
    assert not dialog.runner.running() and dialog.start_button.isEnabled()


# ---------------------------------------------------------------- the picker
def test_the_picker_lists_sources_switches_the_layer_and_says_when_one_is_missing(qtbot):
    panel = TimelinePanel()
    qtbot.addWidget(panel)
    rng = np.random.default_rng(0)
    imported, zs, current = (rng.integers(0, 2, (25, 10)).astype(np.uint8) for _ in range(3))
    chosen = []
    panel.pseudo_chosen.connect(chosen.append)
    panel.set_pseudo_sources(["pseudo", "pseudo:zs"], "pseudo")
    panel.set_clip([1], {"audio": current, "visual": current}, {t: {"pseudo": imported} for t in ("audio", "visual")})
    combo = panel.pseudo_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["imported", "zs"] and combo.toolTip()
    combo.setCurrentIndex(1)  # the reviewer picks zs
    assert chosen == ["pseudo:zs"] and panel.pseudo_source() == "pseudo:zs"
    panel.set_layers({t: {"pseudo": zs} for t in ("audio", "visual")})  # what the window does with the choice
    assert np.array_equal(panel.timeline("visual").layers()["pseudo"], zs)
    assert np.array_equal(panel.timeline("audio_visual").layers()["pseudo"], zs & zs)
    assert panel.pseudo_differences() == {t: int((zs != current).sum()) for t in ("audio", "visual")}
    assert panel.pseudo_diff["visual"].text() == f"zs differs in {int((zs != current).sum())} cells"
    panel.set_pseudo_sources(["pseudo"], "pseudo:zs")  # a clip without zs
    panel.set_clip([1], {"audio": current, "visual": current}, {t: {"pseudo": None} for t in ("audio", "visual")})
    assert combo.currentText() == "zs (none on this clip)" and panel.pseudo_missing()
    assert panel.timeline("audio").layers()["pseudo"] is None and panel.pseudo_diff["audio"].text() == ""
    assert "pseudo" in panel.timeline("audio")._slot_names()  # the layer's place reads "n/a", not gone
    assert panel.timeline("audio")._titles == {"pseudo": "zs"}  # over the layer and in the diff legend
    assert chosen == ["pseudo:zs"]  # filling the list is no choice


@pytest.fixture
def window(qtbot, tmp_path, db):
    engine = open_database(db)
    store = LabelStore(engine)
    clips = store.clips()
    for clip in clips[1:]:  # the first clip has no zs labels
        for track in ("audio", "visual"):
            store.save_track(clip.id, track, "pseudo:zs", zs_grid(clip, track), 0, "gen")
    prefs = Preferences(tmp_path / "settings.ini")
    prefs.annotator = "tester"
    win = MainWindow(engine, prefs, db)
    qtbot.addWidget(win)
    win.team.timer.stop()
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    return win


def test_the_window_switches_pseudo_sources_remembers_them_and_marks_a_clip_without(qtbot, window, db):
    store = LabelStore(open_database(db))
    clips = store.clips()
    with_zs, without = clips[2], clips[0]
    window.show_clip(with_zs.id)
    combo = window.timelines.pseudo_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["imported", "zs"]
    imported = store.track(with_zs.id, "audio", "pseudo").grid
    assert np.array_equal(window.timelines.timeline("audio").layers()["pseudo"], imported)
    edited_before = window.timelines.timeline("audio").current()
    combo.setCurrentIndex(combo.findData("pseudo:zs"))
    for track in ("audio", "visual"):
        assert np.array_equal(window.timelines.timeline(track).layers()["pseudo"], zs_grid(with_zs, track))
        assert np.array_equal(window.session.view.layers[track]["pseudo"], zs_grid(with_zs, track))
    assert np.array_equal(window.timelines.timeline("audio").current(), edited_before)  # the edited grid stays
    differ = int((zs_grid(with_zs, "visual") != window.session.view.current["visual"]).sum())
    assert window.timelines.pseudo_differences()["visual"] == differ
    assert window.timelines.pseudo_diff["visual"].text() == f"zs differs in {differ} cells"

    window.show_clip(without.id)  # remembered across clips: no other source stands in
    assert combo.currentText() == "zs (none on this clip)" and window.timelines.pseudo_missing()
    assert window.timelines.timeline("visual").layers()["pseudo"] is None
    window.show_clip(with_zs.id)
    assert combo.currentText() == "zs"
    qtbot.waitUntil(lambda: window.prefs.recent_value(f"pseudo-source/{window._workspace_key()}") == "pseudo:zs",
                    timeout=5000)  # kept for this database, once the switching stops

    window.editor.setFocus()
    QTest.keySequence(window, NEXT_PSEUDO_KEY)  # the keyboard way: the next source of the clip
    assert window.session.pseudo_choice == "pseudo" and combo.currentText() == "imported"
    assert np.array_equal(window.timelines.timeline("audio").layers()["pseudo"], imported)
    QTest.keyClick(window.focusWidget(), Qt.Key.Key_S, Qt.KeyboardModifier.AltModifier)  # its label's mnemonic
    assert window.focusWidget() is combo
    cursor = window.timelines.timeline("audio").cursor()
    QTest.keyClick(combo, Qt.Key.Key_Down)  # a focused picker follows the arrow keys, not the editor's cursor
    assert window.session.pseudo_choice == "pseudo:zs" and window.timelines.timeline("audio").cursor() == cursor
    QTest.keyClick(combo, Qt.Key.Key_Up)
    assert window.session.pseudo_choice == "pseudo"
    QTest.keyClick(combo, Qt.Key.Key_Escape)  # back to the grids
    assert window.focusWidget() is window.editor


def test_the_real_command_from_the_menu_stores_a_set_the_picker_shows_at_once(qtbot, window, db):
    """Model > Generate pseudo-labels… with `avvp-studio pseudo-label` itself (zero-shot on the demo's features and
    caption embeddings): the stored source is chosen in the picker at once, its grids are the store's."""
    store = LabelStore(open_database(db))
    window.show_clip(store.clips()[0].id)
    action = next(a for m in window.menuBar().actions() if m.text() == "&Model" for a in m.menu().actions()
                  if a.text() == "Generate pseudo-labels…")
    action.trigger()
    dialog = window.pseudo_dialog
    assert dialog is not None and dialog.isVisible() and dialog.program is None
    dialog.name.setText("real-zs")
    status, code, tail = run(qtbot, dialog, timeout=120_000)
    assert (status, code) == ("finished", 0), tail
    clips = store.clips()
    assert dialog.last_done["stored"] == len(clips) and f"{len(clips)} clips written" in dialog.summary.text()
    assert "val* segment" in dialog.summary.text()  # no captions.json in the demo: val chose the thresholds
    view = window.session.view
    combo = window.timelines.pseudo_combo
    assert "pseudo:real-zs" in view.pseudo_sources and combo.currentText() == "real-zs"
    for track in ("audio", "visual"):
        stored = store.track(view.clip.id, track, "pseudo:real-zs")
        assert stored.exists and np.array_equal(window.timelines.timeline(track).layers()["pseudo"], stored.grid)
    assert "pseudo:real-zs" in window.statusBar().currentMessage()
    dialog.reject()  # closing hides it; the menu brings the same one back
    action.trigger()
    assert window.pseudo_dialog is dialog and dialog.isVisible()
