"""The model in the loop (issue 11): training from the window in a real subprocess, runs as rows of
the store, predictions with their probabilities, the prediction overlay, the model sorts."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QColor
from PySide6.QtTest import QTest

from annotation.db import open_database
from annotation.demo import build_demo
from annotation.exporter import ExportError, export_labels
from annotation.importer import import_llp, store_predictions
from annotation.predictions import clip_scores, run_scores
from annotation.queue import QueueFilter, ReviewQueue
from annotation.runs import get_run, list_runs
from annotation.store import LabelStore
from app.cli import run_cli
from inference.metrics import binarize
from tests.llp_fixtures import make_llp_dir
from ui.prediction_overlay import STATUS_COLOUR, overlay_items
from ui.training_panel import TrainingPanel
from ui.training_runner import TRAINING_NICENESS, TrainingRunner, TrainRequest

TINY = ["--model-config", json.dumps({"hidden": 32, "dim_feedforward": 32}), "--batch-size", "8"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return build_demo(tmp_path_factory.mktemp("loop") / "demo", clips=40, seed=7, videos=False).out_dir


@pytest.fixture
def db(tmp_path, project) -> str:
    url = str(tmp_path / "studio.sqlite")
    import_llp(open_database(url), project)
    return url


@pytest.fixture
def panel(qtbot, tmp_path, db, project) -> TrainingPanel:
    widget = TrainingPanel(tmp_path / "runs")
    qtbot.addWidget(widget)
    widget.set_database(open_database(db), db, "ann", str(project))
    return widget


def run_to_end(qtbot, panel: TrainingPanel, request: TrainRequest, timeout: float = 120) -> tuple[str, int, str]:
    with qtbot.waitSignal(panel.runner.finished, timeout=int(timeout * 1000)) as blocker:
        panel.launch(request)
    return tuple(blocker.args)


def request(panel: TrainingPanel, name: str, epochs: int = 3, **extra) -> TrainRequest:
    base = panel.request()
    base.name, base.out, base.epochs = name, str(panel.runs_root / name), epochs
    base.extra = TINY + extra.pop("more", [])
    for key, value in extra.items():
        setattr(base, key, value)
    return base


def test_the_form_becomes_one_train_command(panel, project, db):
    panel.model.setCurrentIndex(panel.model.findData("mug"))
    panel.random_text.setChecked(True)
    panel.epochs.setValue(7)
    panel.cmrc.setValue(5)
    panel.name.setText("mine")
    argv = panel.request().argv(python="PY")
    assert argv[:3] == ["PY", "-m", "app.main"] and argv[3] == "train"
    text = " ".join(argv)
    for part in (f"--data {project}", f"--db {db}", "--name mine", "--events", "--model mug", "--epochs 7",
                 "--cmrc 5", "--random-text", "--predict val,test", "--device cpu", "--annotator ann"):
        assert part in text, part
    assert "--text-audio" not in text  # the stand-in, not files
    everything = TrainRequest(data="D", db="B", out="O", name="n", model="han", device="all", gpus=4)
    assert everything.argv(python="PY") == ["PY", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
                                            "-m", "inference.train_ddp", "--data", "D", "--db", "B", "--out", "O",
                                            "--name", "n", "--events", "--model", "han", "--predict", "val,test"]
    assert argv[-2:] == ["--device", "cpu"]
    panel.folder.setText("")
    with pytest.raises(ValueError, match="feature folder"):
        panel.request()
    panel.folder.setText(str(project))
    panel.name.setText("bad name!")
    with pytest.raises(ValueError, match="run name"):
        panel.request()


def test_a_run_in_a_subprocess_feeds_the_curves_records_itself_and_stores_predictions(qtbot, panel, db):
    events: list[dict] = []
    panel.runner.events.connect(events.extend)
    finished: list = []
    panel.run_finished.connect(lambda status, source: finished.append((status, source)))
    status, code, _ = run_to_end(qtbot, panel, request(panel, "first"))
    assert (status, code) == ("finished", 0), panel.log_view.toPlainText()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 3 and "end" in kinds
    assert kinds.count("predicted") == 2 and kinds.count("step") == 3 * events[0]["steps_per_epoch"]
    panel._redraw()
    steps, losses = panel.loss_curve.getOriginalDataset()  # every step (the drawn set is thinned to the pixels)
    assert len(steps) == kinds.count("step") and np.all(np.isfinite(losses))
    assert len(panel.val_curves[("segment", "type")].getData()[0]) == 3  # one val point per epoch
    assert finished == [("finished", "prediction:first")]
    run = get_run(open_database(db), "first")
    assert run.status == "finished" and run.started_by == "ann" and run.model == "valor"
    end = next(e for e in events if e["event"] == "end")
    assert run.metrics["test"] == end["test"] == json.loads((panel.runs_root / "first/metrics.json").read_text())["test"]
    assert len(run.metrics["per_class"]["audio"]) == 25
    engine = open_database(db)
    labels = LabelStore(engine)
    scores = run_scores(engine, "prediction:first")
    val_test = [c for c in labels.clips() if c.split in ("val", "test")]
    assert sorted(scores) == sorted(c.id for c in val_test)
    for clip in val_test[:3]:  # the stored 0/1 grid is the published rule applied to the stored probabilities
        s = scores[clip.id]
        pred_a, pred_v = binarize(s.audio[None], s.visual[None], s.video[None])
        np.testing.assert_array_equal(labels.track(clip.id, "audio", "prediction:first").grid, pred_a[0])
        np.testing.assert_array_equal(labels.track(clip.id, "visual", "prediction:first").grid, pred_v[0])


def test_step_events_are_shown_at_the_next_redraw_not_one_by_one(panel):
    """A fast run sends hundreds of step events a second: each only files its numbers; the status line
    and the curve follow at the redraw (every REDRAW_MS)."""
    panel.current = request(panel, "flood")
    panel._on_event({"event": "start", "steps_per_epoch": 100, "epochs": 2, "device": "cpu", "model": "han",
                     "clips": {"train": 800}})
    started = panel.status.text()
    for i in range(1, 101):
        panel._on_event({"event": "step", "epoch": 1, "step": i, "steps": 100, "loss": 1 / i, "eta": 100 - i,
                         "t": i * 0.01})
    assert panel.status.text() == started
    panel._redraw()
    assert "epoch 1/2, step 100/100" in panel.status.text() and "800 clips/s" in panel.status.text()
    steps, losses = panel.loss_curve.getOriginalDataset()
    assert list(steps) == list(range(1, 101)) and losses[-1] == pytest.approx(0.01)


def test_json_events_write_steps_in_bursts_and_everything_else_at_once():
    """A reader is woken a few times a second, not per step; no step is lost or reordered, and any
    other event carries the steps before it out with it."""
    import io

    from inference.callbacks import JsonEvents

    stream = io.StringIO()
    events = JsonEvents(stream, interval=3600)
    events.on_train_start({"model": "han"})
    for step in range(1, 6):
        events.on_step(1, step, 5, 1.0 / step, 0.0)
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["start"]
    events.emit("epoch", epoch=1)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["start"] + ["step"] * 5 + ["epoch"]
    assert [e["step"] for e in lines[1:6]] == [1, 2, 3, 4, 5]
    hasty = io.StringIO()
    events = JsonEvents(hasty, interval=0.0)
    events.on_step(1, 1, 5, float("nan"), 0.0)  # NaN is no JSON: null
    assert json.loads(hasty.getvalue())["loss"] is None


class _Flood(TrainRequest):
    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, "-c", "import json\n"
                "for i in range(20000): print(json.dumps({'event': 'step', 'epoch': 1, 'step': i + 1, 'steps': 20000, "
                "'loss': 1.0, 'eta': 0, 't': i}))\n"
                "print('a line that is not an event')\n"
                "print(json.dumps({'event': 'done', 'status': 'finished', 'code': 0}), end='')"]


def test_a_flood_of_events_arrives_whole_in_order_in_slices_and_before_the_verdict(qtbot, monkeypatch):
    """The reader hands events over in slices of bounded time (the rest on a timer, so the event loop
    breathes in between), loses none, keeps the order, and says 'finished' only after the last one
    (even one without a newline)."""
    import ui.training_runner as runner_module

    monkeypatch.setattr(runner_module, "READ_BUDGET_S", 0.0)  # every slice over at once: all the rest deferred
    runner = TrainingRunner()
    deferred = []
    scheduled = runner._scheduled_drain
    monkeypatch.setattr(runner, "_scheduled_drain", lambda: (deferred.append(1), scheduled()))
    seen: list[dict] = []
    signals = []
    runner.events.connect(lambda batch: (seen.extend(batch), signals.append(len(batch))))
    with qtbot.waitSignal(runner.finished, timeout=60_000) as blocker:
        runner.start(_Flood(data="", db="", out="", name="flood"))
    assert blocker.args[0] == "finished" and "a line that is not an event" in blocker.args[2]
    steps = [e["step"] for e in seen if e["event"] == "step"]
    assert steps == list(range(1, 20001)) and seen[-1]["event"] == "done"
    assert max(signals) <= 64 and deferred  # the slices went through the timer, not in one go
    assert not runner.running() and runner.announced


class _Stubborn(TrainRequest):
    """A process that ignores SIGINT, says nothing, and shows what it was given."""

    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, "-c", "import os, signal, sys, time\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "print('argv', sys.argv[1:], 'PGPASSWORD=' + os.environ.get('PGPASSWORD', ''), file=sys.stderr, "
                "flush=True)\n"
                "time.sleep(60)", "--db", self.db]


def test_a_cancel_that_ends_in_a_kill_leaves_a_stopped_run_in_the_runs_database(qtbot, tmp_path, monkeypatch, db):
    """Cancel, then SIGTERM after the grace, with nothing said by the process: the runs table of the
    database the run started in (not the one opened meanwhile) says stopped, not running; the password
    of a server URL reaches the process in its environment, never on its command line or in the log."""
    import ui.training_runner as runner_module
    from annotation.runs import start_run

    monkeypatch.setattr(runner_module, "CANCEL_GRACE_S", 0.5)
    engine = open_database(db)
    start_run(engine, "stubborn", "valor", "avvp", {}, "/data", "/runs/stubborn", "cpu", "ann")
    panel = TrainingPanel(tmp_path / "runs")
    qtbot.addWidget(panel)
    panel.set_database(engine, db, "ann", "/data")
    request = _Stubborn(data="", db="postgresql+psycopg://ann:s3cret@host/studio", out="", name="stubborn")
    assert "s3cret" not in " ".join(request.without_password()[0].argv())
    with qtbot.waitSignal(panel.runner.finished, timeout=30_000) as blocker:
        panel.launch(request)
        qtbot.waitUntil(lambda: any(line.startswith("argv") for line in panel.runner.tail), timeout=20_000)
        other = str(tmp_path / "other.sqlite")
        import_llp(open_database(other), make_llp_dir(tmp_path / "llp"))
        panel.set_database(open_database(other), other, "ann", "/data")  # another database opened meanwhile
        panel.cancel()
        panel.cancel()  # a second click sends nothing more
    status, _, tail = blocker.args
    assert status == "stopped" and not panel.runner.announced and "terminated" in tail
    assert "PGPASSWORD=s3cret" in tail and "s3cret" not in tail.replace("PGPASSWORD=s3cret", "")
    run = get_run(engine, "stubborn")
    assert run.status == "stopped" and "resume" in run.message
    assert list_runs(open_database(other)) == []


def test_runs_json_lists_name_model_status_and_the_ten_numbers(qtbot, panel, db, capsys):
    run_to_end(qtbot, panel, request(panel, "listed", epochs=2))
    capsys.readouterr()
    assert run_cli(["runs", "--db", db, "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["model"], listed["status"]) == ("listed", "valor", "finished")
    metrics = json.loads((panel.runs_root / "listed" / "metrics.json").read_text())
    assert listed["metrics"]["test"] == metrics["test"] and listed["metrics"]["val"] == metrics["val"]
    assert run_cli(["runs", "--db", db]) == 0
    assert "listed" in capsys.readouterr().out


def test_cancel_stops_within_seconds_keeps_the_run_and_resume_finishes_it(qtbot, panel, db):
    first_epoch: list = []
    panel.runner.events.connect(lambda batch: first_epoch.extend(e for e in batch if e["event"] == "epoch"))
    with qtbot.waitSignal(panel.runner.finished, timeout=120_000) as blocker:
        panel.launch(request(panel, "long", epochs=400, more=["--batch-size", "2"]))
        qtbot.waitUntil(lambda: bool(first_epoch), timeout=60_000)
        # the training process yields the CPU to the window (its threads too: niceness is per thread)
        pid = panel.runner.process.processId()
        for task in Path(f"/proc/{pid}/task").iterdir():
            assert os.getpriority(os.PRIO_PROCESS, int(task.name)) >= TRAINING_NICENESS
        began = time.monotonic()
        panel.runner.cancel()
    gone = time.monotonic() - began
    status, code, _ = blocker.args
    assert status == "stopped" and code == 130 and gone < 5.0
    run = get_run(open_database(db), "long")
    assert run.status == "stopped" and "resume" in run.message
    assert (panel.runs_root / "long" / "last.pt").exists()
    assert panel.resume_button.isEnabled() and not panel.retrain_button.isEnabled()
    resumed: list[dict] = []
    panel.runner.events.connect(lambda batch: resumed.extend(e for e in batch if e["event"] == "start"))
    with qtbot.waitSignal(panel.runner.finished, timeout=60_000) as blocker:
        panel.resume_last()
        qtbot.waitUntil(lambda: bool(resumed), timeout=60_000)
        panel.runner.cancel()  # 400 epochs are not waited for: the resume started where the stop was
    assert resumed[0]["start_epoch"] > 1 and blocker.args[0] == "stopped"


def test_a_refused_run_and_a_killed_process_are_shown_with_the_log_tail(qtbot, panel, db, tmp_path):
    bad = request(panel, "refused")
    bad.data = str(tmp_path / "nowhere")
    status, code, tail = run_to_end(qtbot, panel, bad)
    assert status == "failed" and code == 2 and "nowhere" in tail
    assert "refused failed" in panel.status.text() and "nowhere" in panel.log_view.toPlainText()
    with qtbot.waitSignal(panel.runner.finished, timeout=120_000) as blocker:
        panel.launch(request(panel, "killed", epochs=400, more=["--batch-size", "2"]))
        qtbot.waitUntil(lambda: panel._loss_count > 0, timeout=60_000)
        panel.runner.process.kill()  # as the OOM killer would
    assert blocker.args[0] == "crashed"
    assert get_run(open_database(db), "killed").status == "failed"  # not left "running"
    assert panel.train_button.isEnabled()


def test_retrain_with_my_corrections_reuses_the_last_config_on_the_current_labels(qtbot, panel, db):
    run_to_end(qtbot, panel, request(panel, "base", epochs=2))
    assert panel.retrain_button.isEnabled()
    with qtbot.waitSignal(panel.runner.finished, timeout=120_000) as blocker:
        panel.retrain_last()
    assert blocker.args[0] == "finished", blocker.args[2]
    names = [r.name for r in list_runs(open_database(db))]
    assert names[0] == "base-r2"
    first = json.loads((panel.runs_root / "base" / "config.json").read_text())["train"]
    again = json.loads((panel.runs_root / "base-r2" / "config.json").read_text())["train"]
    assert again["model_config"] == first["model_config"] and again["epochs"] == first["epochs"] == 2


# ---------------------------------------------------------------- store, export, predict --db


def fake_run(engine, name: str, clip_ids: list[int], seed: int = 0):
    """Store a prediction run with known probabilities."""
    rng = np.random.default_rng(seed)
    store = LabelStore(engine)
    names = {c.id: c.filename for c in store.clips()}
    scores = {names[c]: (rng.random((25, 10)).astype(np.float32), rng.random((25, 10)).astype(np.float32),
                         rng.random(25).astype(np.float32)) for c in clip_ids}
    grids_a, grids_v = {}, {}
    for filename, (a, v, g) in scores.items():
        pa, pv = binarize(a[None], v[None], g[None])
        grids_a[filename], grids_v[filename] = pa[0], pv[0]
    store_predictions(engine, name, grids_a, grids_v, scores)
    return scores


def test_probabilities_round_trip_through_the_store_and_export(db, tmp_path, capsys):
    engine = open_database(db)
    clips = [c for c in LabelStore(engine).clips() if c.split == "test"]
    scores = fake_run(engine, "probe", [c.id for c in clips])
    for clip in clips:
        stored = clip_scores(engine, clip.id, "prediction:probe")
        a, v, g = scores[clip.filename]
        assert np.array_equal(stored.audio, a) and np.array_equal(stored.visual, v) and np.array_equal(stored.video, g)
    out = tmp_path / "export"
    assert run_cli(["export", "labels", "--db", db, "--source", "prediction:probe", "--split", "test",
                    "--probabilities", "--out", str(out)]) == 0
    assert f"probabilities: {len(clips)} of {len(clips)} clips" in capsys.readouterr().out
    for clip in clips:
        a, v, g = scores[clip.filename]
        audio = np.load(out / "CLAP/segment_probabilities" / f"{clip.video_id}.npy", allow_pickle=False)
        assert audio.dtype == np.float32 and audio.shape == (10, 25) and np.array_equal(audio, a.T)
        assert np.array_equal(np.load(out / "CLIP/segment_probabilities" / f"{clip.video_id}.npy"), v.T)
        assert np.array_equal(np.load(out / "video_probabilities" / f"{clip.video_id}.npy"), g)
        binary = np.load(out / "CLAP/segment_pseudo_labels" / f"{clip.video_id}.npy")
        assert np.array_equal(binary, binarize(a[None], v[None], g[None])[0][0].T)  # 0/1 beside, from them
    with pytest.raises(ExportError, match="only prediction runs"):
        export_labels(engine, tmp_path / "x", source="best", probabilities=True)


def test_predict_db_refuses_a_data_folder_whose_clips_are_other_time_windows(db, project, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(project, other)
    test_csv = other / "AVVP_test_pd.csv"
    lines = test_csv.read_text().splitlines()
    name = lines[1].split("\t")[0]
    moved = name[:11] + "_990_1000"
    test_csv.write_text("\n".join([lines[0], lines[1].replace(name, moved, 1), *lines[2:]]) + "\n")
    run = tmp_path / "run"
    assert run_cli(["train", "--data", str(project), "--model", "valor", "--epochs", "1", *TINY, "--device", "cpu",
                    "--out", str(run)]) == 0
    capsys.readouterr()
    code = run_cli(["predict", "--run", str(run), "--data", str(other), "--db", db, "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2 and f"the database's clip {name} is {moved} in the data folder" in err
    assert not LabelStore(open_database(db)).versions(1).get("audio/prediction:run")


# ---------------------------------------------------------------- model sorts and overlay


def test_model_sorts_follow_the_run_and_the_labels_now(db):
    engine = open_database(db)
    store = LabelStore(engine)
    ids = [c.id for c in store.clips()]
    scores = fake_run(engine, "sorter", ids)
    queue = ReviewQueue().load(engine).attach_run(engine, "prediction:sorter")
    doubt = {c.id: float(np.mean(1 - np.abs(2 * scores[c.filename][0] - 1))) for c in store.clips()}
    order = queue.positions(QueueFilter(split=None, statuses=None, empty_visual=None), "uncertainty_audio", True)
    listed = queue.clip_ids(order).tolist()
    assert listed == sorted(ids, key=lambda i: (-doubt[i], i))
    clip = ids[0]
    before = queue.model_score(clip, "model_disagreement")
    predicted = store.track(clip, "audio", "prediction:sorter").grid
    store.save_track(clip, "audio", "manual", predicted, 0, "ann")  # agree with the model on audio
    queue.refresh_clip(engine, clip)
    after = queue.model_score(clip, "model_disagreement")
    visual_differs = float(np.mean(store.best(clip, "visual").grid != store.track(clip, "visual",
                                                                                  "prediction:sorter").grid)) / 2
    assert after == pytest.approx(visual_differs) and after <= before


def test_overlay_items_compare_the_run_with_the_labels_now():
    pred = np.zeros((25, 10), np.uint8)
    labels = np.zeros((25, 10), np.uint8)
    pred[3, 2] = pred[5, 2] = 1
    labels[3, 2] = labels[7, 2] = 1
    items = overlay_items(2, {"audio": pred, "visual": None}, {"audio": labels, "visual": labels}, None)
    assert {(i.cls, i.status) for i in items} == {(3, "agree"), (5, "model"), (7, "label")}
    assert all(i.track == "audio" and i.probability is None for i in items)


def test_the_overlay_is_drawn_over_the_video_and_the_strip_under_it(qtbot, tmp_path):
    from annotation.demo import build_demo as demo
    from ui.main_window import MainWindow
    from ui.preferences import Preferences

    folder = demo(tmp_path / "v", clips=12, seed=3).out_dir
    url = str(tmp_path / "v.sqlite")
    engine = open_database(url)
    import_llp(engine, folder)
    store = LabelStore(engine)
    clip = next(c for c in store.clips() if c.video_path)
    scores = fake_run(engine, "shown", [clip.id], seed=3)
    prefs = Preferences(tmp_path / "s.ini")
    prefs.annotator = "ann"
    window = MainWindow(engine, prefs, url)
    qtbot.addWidget(window)
    window.team.timer.stop()
    window.show()
    qtbot.waitExposed(window)
    window.show_clip(clip.id)
    assert window.timelines.run_combo.currentText() == "shown"  # the run's name is on screen
    view = window.session.view
    seg = 4
    window.player.seek(seg + 0.5)
    items, run = window.player.view.overlay
    expected = overlay_items(seg, {t: view.layers[t]["prediction"] for t in ("audio", "visual")}, view.current,
                             view.scores)
    assert run == "shown" and items == expected and items
    a, _, _ = scores[clip.filename]
    for item in items:
        grid = view.layers[item.track]["prediction"]
        assert item.status == ("agree" if grid[item.cls, seg] and view.current[item.track][item.cls, seg]
                               else "model" if grid[item.cls, seg] else "label")
    image = window.player.view.grab().toImage()
    box = window.player.view.image_rect()
    found = {QColor(image.pixel(x, y)).name() for x in range(int(box.left()) + 8, int(box.left()) + 300)
             for y in range(int(box.top()) + 8, int(box.top()) + 8 + 20 * (len(items) + 1))}
    for status in {i.status for i in items}:  # each status's colour is painted (its text)
        colour = QColor(STATUS_COLOUR[status])
        assert any(_close(QColor(c), colour) for c in found), status
    assert window.player.prediction_strip.isVisible()
    window.toggle_overlay()
    assert window.player.view.overlay is None and not window.player.prediction_strip.isVisible()
    plain = window.player.view.grab().toImage()
    assert plain != image
    QTest.qWait(1)


def _close(a: QColor, b: QColor, tolerance: int = 40) -> bool:
    return abs(a.red() - b.red()) + abs(a.green() - b.green()) + abs(a.blue() - b.blue()) < tolerance


def _ten(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {level: {k: float(rng.uniform(10, 90)) for k in ("audio", "visual", "audio_visual", "type", "event")}
            for level in ("segment", "event")}


def test_the_window_picks_runs_by_name_follows_a_finished_run_and_compares_them(qtbot, db, tmp_path):
    from annotation.runs import finish_run, start_run
    from ui.main_window import MainWindow
    from ui.preferences import Preferences
    from ui.runs_dialog import RunsDialog

    engine = open_database(db)
    clips = [c for c in LabelStore(engine).clips() if c.split in ("val", "test")]
    for k, name in enumerate(("alpha", "beta")):
        start_run(engine, name, "valor", "avvp", {}, "/data", f"/runs/{name}", "cpu", "ann")
        per_class = {t: [float(v) for v in np.linspace(0, 100, 25) * (k + 1) / 2] for t in ("audio", "visual")}
        finish_run(engine, name, "finished", best_epoch=k + 1,
                   metrics={"val": _ten(k), "test": _ten(10 + k), "per_class": per_class})
        fake_run(engine, name, [c.id for c in clips], seed=k)
    prefs = Preferences(tmp_path / "s.ini")
    prefs.annotator = "ann"
    window = MainWindow(engine, prefs, db)
    qtbot.addWidget(window)
    window.team.timer.stop()
    window.show()
    names = [window.timelines.run_combo.itemText(i) for i in range(window.timelines.run_combo.count())]
    assert sorted(names) == ["alpha", "beta"]
    window.show_clip(clips[0].id)
    window.timelines.run_combo.setCurrentIndex(names.index("alpha"))  # the annotator picks a run
    assert window.session.view.prediction_source == "prediction:alpha"
    assert window.player.view.overlay is not None and window.player.view.overlay[1] == "alpha"
    expected = LabelStore(engine).track(clips[0].id, "audio", "prediction:alpha").grid
    assert np.array_equal(window.session.view.layers["audio"]["prediction"], expected)
    window._training_finished("finished", "prediction:beta")  # what the panel says when a run has stored its own
    assert window.timelines.run_combo.currentText() == "beta"
    assert window.session.view.prediction_source == "prediction:beta"
    assert window.queue._queue.run is None  # the run's scores are read for the model sorts only
    window.queue.set_filter(QueueFilter(split=None, statuses=None, empty_visual=None))
    window.queue.set_sort("uncertainty_visual", True)
    assert window.queue._queue.run == "prediction:beta"
    beta = run_scores(engine, "prediction:beta")
    doubt = {c.id: float(np.mean(1 - np.abs(2 * beta[c.id].visual - 1))) if c.id in beta else 0.0
             for c in LabelStore(engine).clips()}
    assert window.queue.visible_clip_ids() == sorted(doubt, key=lambda i: (-doubt[i], i))

    dialog = RunsDialog(list_runs(engine))
    qtbot.addWidget(dialog)
    rows = {dialog.table.item(r, 0).text(): r for r in range(dialog.table.rowCount())}
    heads = [dialog.table.horizontalHeaderItem(c).text() for c in range(dialog.table.columnCount())]
    test_beta = get_run(engine, "beta").metrics["test"]
    assert dialog.table.item(rows["beta"], heads.index("seg Type")).text() == f"{test_beta['segment']['type']:.2f}"
    assert dialog.table.item(rows["beta"], heads.index("eve AV")).text() == \
        f"{test_beta['event']['audio_visual']:.2f}"
    dialog.split.setCurrentIndex(1)  # val
    val_alpha = get_run(engine, "alpha").metrics["val"]
    assert dialog.table.item(rows["alpha"], heads.index("seg A")).text() == f"{val_alpha['segment']['audio']:.2f}"
    dialog.table.selectAll()
    bars = [i for i in dialog.bars.getPlotItem().items if type(i).__name__ == "BarGraphItem"]
    assert len(bars) == 2 and "alpha" in dialog.note.text() and "beta" in dialog.note.text()
