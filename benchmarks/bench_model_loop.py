"""The model in the loop, as the annotator feels it (offscreen window, CPU).

Data: the synthetic demo (`build_demo(clips=600, videos=False)` for training, the 32-clip demo
with videos for the overlay), imported into SQLite. Measured, each against a baseline of the
same run:
- the longest GUI event-loop stall (the largest gap between ticks of a 1 ms timer) while the
  training panel reads a process's events: (a) a real `train --events` process whose steps are
  as short as training allows (tiny HAN, batch 1: as many step events as it makes), (b) a
  process that writes step events as fast as its pipe takes them (the worst case for the reader);
  baseline: the same loop for the same time with no process. Target < 50 ms;
- Cancel to the training process gone (the `finished` signal, and no such pid), cancelled in the
  middle of an epoch, three times; target < 2 s;
- the event stream's cost: median epoch time (training steps) of the same `train` command (HAN,
  batch 4) with and without `--events`, its stdout a pipe this process reads, interleaved;
  target < 2 %;
- opening a clip with the prediction overlay (a stored run with probabilities) vs with it off,
  in passes over the demo clips (a warm-up pass, then off, on, on, off; every open from another
  clip, as when going through the queue), median; target < 10 ms more. A run is chosen in both
  arms (the prediction layer and its probabilities are read either way); the difference is the
  overlay and the strip: building their items and painting them. Also, with less noise, what a
  segment change costs during playback: the window's segment handler and the repaint of frame and
  strip.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np

from common import REPO, save, verdict

from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from annotation.db import open_database
from annotation.demo import build_demo
from annotation.importer import import_llp, store_predictions
from annotation.store import LabelStore
from inference.metrics import binarize
from ui.main_window import MainWindow
from ui.preferences import Preferences
from ui.training_panel import TrainingPanel
from ui.training_runner import TrainRequest

TINY = ["--model", "han", "--model-config", json.dumps({"hidden": 32, "dim_feedforward": 32})]
FLOOD = ("import json, sys, time\n"
         "end = time.monotonic() + float(sys.argv[1])\n"
         "print(json.dumps({'event': 'start', 'steps_per_epoch': 1000, 'epochs': 1, 'device': 'cpu', "
         "'model': 'han', 'clips': {'train': 1}}), flush=True)\n"
         "i = 0\n"
         "while time.monotonic() < end:\n"
         "    i += 1\n"
         "    print(json.dumps({'event': 'step', 'epoch': 1, 'step': i % 1000 + 1, 'steps': 1000, "
         "'loss': 1.0 / i, 'eta': 1.0, 't': i}), flush=True)\n"
         "print(json.dumps({'event': 'done', 'status': 'finished', 'code': 0}), flush=True)\n")


class StallMeter:
    """The largest gap between ticks of a 1 ms timer in the GUI thread: how long the loop was held."""

    def __init__(self):
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(1)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []

    def _tick(self) -> None:
        self.gaps.append(self.clock.nsecsElapsed() / 1e6)
        self.clock.restart()

    def measure(self, app: QApplication, seconds: float, until=lambda: False) -> float:
        """Run Qt's own event loop (as the window does) for `seconds` or until `until()`; the longest gap."""
        self.gaps = []
        loop = QEventLoop()
        check = QTimer()
        check.setInterval(20)
        check.timeout.connect(lambda: until() and loop.quit())
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        self.clock.start()
        self.timer.start()
        check.start()
        loop.exec()
        check.stop()
        self.timer.stop()
        return max(self.gaps[1:], default=0.0)

    def p99(self) -> float:
        return float(np.percentile(self.gaps[1:], 99)) if len(self.gaps) > 1 else 0.0


def stall_figures(app: QApplication, panel: TrainingPanel, data: Path, db: str, runs: Path) -> dict:
    meter = StallMeter()
    events = {"n": 0}
    panel.runner.events.connect(lambda batch: events.__setitem__("n", events["n"] + len(batch)))
    meter.measure(app, 2.0)  # warm-up: first paints, the panel's device search
    baseline = meter.measure(app, 6.0)
    baseline_p99 = meter.p99()

    request = TrainRequest(data=str(data), db=db, out=str(runs / "stream"), name="stream", epochs=2,
                           predict=(), extra=TINY + ["--batch-size", "1"])
    events["n"] = 0
    panel.launch(request)
    while events["n"] == 0 and panel.runner.running():  # start-up (imports) is not the stream
        app.processEvents()
        time.sleep(0.005)
    started, before = time.monotonic(), events["n"]
    training = meter.measure(app, 8.0, until=lambda: not panel.runner.running())
    training_p99 = meter.p99()
    train_rate = (events["n"] - before) / (time.monotonic() - started)
    panel.runner.cancel()
    while panel.runner.running():
        app.processEvents()

    flood = _flood(app, panel, meter, 6.0, events)
    while panel.runner.running():  # the backlog read to its end
        app.processEvents()
    return {"idle_baseline_max_gap_ms": round(baseline, 1), "training_max_gap_ms": round(training, 1),
            "idle_baseline_p99_gap_ms": round(baseline_p99, 1), "training_p99_gap_ms": round(training_p99, 1),
            "training_step_events_per_s": round(train_rate), "flood_max_gap_ms": round(flood[0], 1),
            "flood_events_per_s": round(flood[1])}


class FloodRequest(TrainRequest):
    """A process that writes step events as fast as its pipe takes them, for `seconds`."""

    seconds: float = 6.0

    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, "-c", FLOOD, str(self.seconds)]


def _flood(app: QApplication, panel: TrainingPanel, meter: StallMeter, seconds: float, events: dict) -> tuple[float, float]:
    request = FloodRequest(data="", db="", out="", name="flood", predict=())
    request.seconds = seconds
    events["n"] = 0
    panel.launch(request)
    while events["n"] == 0 and panel.runner.running():
        app.processEvents()
    started = time.monotonic()
    gap = meter.measure(app, seconds + 5, until=lambda: not panel.runner.running())
    return gap, events["n"] / (time.monotonic() - started)


def cancel_figures(app: QApplication, panel: TrainingPanel, data: Path, db: str, runs: Path) -> dict:
    times = []
    for i in range(3):
        request = TrainRequest(data=str(data), db=db, out=str(runs / f"cancel{i}"), name=f"cancel{i}", epochs=50,
                               predict=(), extra=TINY + ["--batch-size", "4"])
        steps = {"n": 0}
        count = lambda batch: steps.__setitem__("n", steps["n"] + sum(e["event"] == "step" for e in batch))  # noqa: E731
        panel.runner.events.connect(count)
        panel.launch(request)
        while steps["n"] < 40 and panel.runner.running():  # well inside the first epoch
            app.processEvents()
            time.sleep(0.002)
        pid = panel.runner.process.processId()
        done = {}
        panel.runner.finished.connect(lambda status, *_: done.setdefault("status", status))
        start = time.perf_counter()
        panel.cancel_button.click()
        while "status" not in done:
            app.processEvents()
            time.sleep(0.001)
        times.append(time.perf_counter() - start)
        assert not _alive(pid), "the training process is still there"
        assert done["status"] == "stopped", done
        panel.runner.events.disconnect(count)
    return {"cancel_to_gone_s": [round(t, 3) for t in times], "cancel_to_gone_max_s": round(max(times), 3)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie not yet reaped counts as gone
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


def event_cost_figures(data: Path, work: Path, rounds: int = 4, epochs: int = 3, batch: int = 4) -> dict:
    """Median epoch time (training steps only, from metrics.json) of the same `train` command with
    `--events` (a JSON line per step on a pipe this process reads) and without (its progress lines on
    the same pipe), interleaved; batch 4 makes the events as dense as a small model's would be."""
    times: dict[str, list[float]] = {"without": [], "with": []}
    for r in range(rounds):
        for kind in (("without", "with") if r % 2 == 0 else ("with", "without")):
            out = work / f"cost-{kind}-{r}"
            argv = [sys.executable, "-m", "app.main", "train", "--data", str(data), "--out", str(out), "--model",
                    "han", "--epochs", str(epochs), "--batch-size", str(batch), "--seed", "1"]
            subprocess.run(argv + (["--events"] if kind == "with" else []), check=True, cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            history = json.loads((out / "metrics.json").read_text())["history"]
            times[kind] += [h["seconds"] for h in history]
    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    steps = json.loads((work / "cost-with-0" / "config.json").read_text())["data"]["steps_per_epoch"]
    return {"epoch_s_without_events": round(without, 3), "epoch_s_with_events": round(with_, 3),
            "event_stream_cost_pct": round(100 * (with_ / without - 1), 2), "epochs_each": len(times["with"]),
            "steps_per_epoch": steps, "batch": batch}


def overlay_figures(app: QApplication, work: Path) -> dict:
    demo = build_demo(work / "videos").out_dir
    db = str(work / "overlay.sqlite")
    engine = open_database(db)
    import_llp(engine, demo)
    store = LabelStore(engine)
    rng = np.random.default_rng(0)
    clips = [c for c in store.clips("all") if c.video_path]
    scores, grids_a, grids_v = {}, {}, {}
    for clip in clips:
        a, v = rng.random((25, 10)).astype(np.float32) ** 3, rng.random((25, 10)).astype(np.float32) ** 3
        g = np.maximum(a.max(1), v.max(1))
        scores[clip.filename] = (a, v, g)
        pa, pv = binarize(a[None], v[None], g[None])
        grids_a[clip.filename], grids_v[clip.filename] = pa[0], pv[0]
    store_predictions(engine, "bench", grids_a, grids_v, scores)
    prefs = Preferences(work / "settings.ini")
    prefs.annotator = "bench"
    window = MainWindow(engine, prefs, db)
    window.resize(1600, 1000)
    window.show()
    app.processEvents()
    window.refresh_runs("prediction:bench")
    times: dict[bool, list[float]] = {True: [], False: []}
    for on in (None, False, True, True, False):  # a warm-up pass, then passes ABBA; every open from another clip
        for clip in clips:
            window.overlay_on = bool(on)
            start = time.perf_counter()
            window.show_clip(clip.id)
            app.processEvents()
            if on is not None:
                times[on].append((time.perf_counter() - start) * 1000)
    window.overlay_on = True
    window.show_clip(clips[0].id)
    drawn = window.player.view.overlay is not None
    step: dict[bool, list[float]] = {True: [], False: []}  # what each segment change costs during playback
    for on in (False, True, True, False):
        window.overlay_on = on
        window.update_overlay()  # as the M key does
        for i in range(100):
            window.player.seek(i % 10 + 0.5)
            start = time.perf_counter()
            window._on_segment(i % 10)  # the window's handler of a segment change
            window.player.view.repaint()
            window.player.prediction_strip.repaint()
            step[on].append((time.perf_counter() - start) * 1000)
    window.close()
    on, off = statistics.median(times[True]), statistics.median(times[False])
    return {"segment_change_with_overlay_ms": round(statistics.median(step[True]), 2),
            "segment_change_without_overlay_ms": round(statistics.median(step[False]), 2),
            "open_clip_with_overlay_ms": round(on, 1), "open_clip_without_overlay_ms": round(off, 1),
            "overlay_extra_ms": round(on - off, 1), "opens_each": len(times[True]), "overlay_present": drawn}


def main() -> None:
    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="avvp-bench-loop-"))
    data = build_demo(work / "demo", clips=600, seed=0, videos=False).out_dir
    db = str(work / "studio.sqlite")
    import_llp(open_database(db), data)
    panel = TrainingPanel(work / "runs")
    panel.set_database(open_database(db), db, "bench", str(data))
    panel.resize(420, 800)
    panel.show()
    os.chdir(REPO)

    figures = {"stall": stall_figures(app, panel, data, db, work / "runs")}
    s = figures["stall"]
    print(f"GUI loop, longest stall: idle {s['idle_baseline_max_gap_ms']} ms (p99 {s['idle_baseline_p99_gap_ms']}); "
          f"while a tiny training run streams {s['training_step_events_per_s']} step events/s: "
          f"{s['training_max_gap_ms']} ms (p99 {s['training_p99_gap_ms']}); while a process floods "
          f"{s['flood_events_per_s']} events/s: {s['flood_max_gap_ms']} ms "
          f"(target < 50 ms: {verdict(max(s['training_max_gap_ms'], s['flood_max_gap_ms']) < 50)})")
    figures["cancel"] = cancel_figures(app, panel, data, db, work / "runs")
    c = figures["cancel"]
    print(f"Cancel mid-epoch -> process gone: {c['cancel_to_gone_s']} s "
          f"(target < 2 s: {verdict(c['cancel_to_gone_max_s'] < 2)})")
    figures["events"] = event_cost_figures(data, work)
    e = figures["events"]
    print(f"epoch time (HAN, batch {e['batch']}, {e['steps_per_epoch']} steps, {e['epochs_each']} epochs each, interleaved): {e['epoch_s_without_events']} s "
          f"without events, {e['epoch_s_with_events']} s with: {e['event_stream_cost_pct']:+.2f} % "
          f"(target < 2 %: {verdict(e['event_stream_cost_pct'] < 2)})")
    figures["overlay"] = overlay_figures(app, work)
    o = figures["overlay"]
    print(f"open a clip (select to drawn, {o['opens_each']} opens each): {o['open_clip_with_overlay_ms']} ms with the "
          f"prediction overlay, {o['open_clip_without_overlay_ms']} ms without: {o['overlay_extra_ms']:+.1f} ms "
          f"(target < 10 ms: {verdict(o['overlay_extra_ms'] < 10)}); a segment change (overlay items and repaint "
          f"of frame and strip): {o['segment_change_with_overlay_ms']} ms with, {o['segment_change_without_overlay_ms']} "
          f"ms without")
    print("GPU: no device in this session; the panel's runner on CUDA is not measured here")
    save("model_loop", figures)
    panel.close()


if __name__ == "__main__":
    main()
