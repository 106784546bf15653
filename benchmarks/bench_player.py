"""Player: load to first frame, audio view set-up, and event-loop stalls while playing.

Uses the real LLP clip from ../shared/llp when it is there, else a demo clip
written by `annotation.demo.write_mp4`. Measured (offscreen):
- `PlayerWidget.load()` until its first frame is painted (median of 15);
  target < 100 ms, the player's share of the main window's 150 ms;
- `AudioView.set_audio` (envelope + STFT + items) on 16 kHz samples (median of 15);
  target < 30 ms; the 16 kHz decode is reported beside it;
- playing ~3 s with the audio view following the playhead: the longest
  event-loop stall, seen by a 5 ms timer as (largest gap between its ticks) - 5 ms;
  target < 50 ms; frames shown and clock advance are reported too;
- a random seek (decoder seek + paint), median of 20.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np

from common import SHARED_LLP, save, timed, verdict

from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from annotation.media import probe
from ui.audio_view import AudioView, load_audio
from ui.player import SOUND_DECODE_DELAY_MS, PlayerWidget

PLAY_SECONDS = 3.0
PROBE_MS = 5
TARGETS = {"load_to_first_frame_ms": 100.0, "audio_view_set_ms": 30.0, "max_stall_ms": 50.0}


def bench_clip(folder: Path) -> tuple[Path, str]:
    real = SHARED_LLP / "BjCEufrlXm4.mp4"
    if real.exists():
        return real, "real LLP clip BjCEufrlXm4.mp4"
    from annotation.demo import AUDIO_RATE, plan_demo, render_audio, write_mp4

    clip = plan_demo(3, seed=0)[0]
    path = folder / "demo_clip.mp4"
    write_mp4(path, clip.visual, render_audio(np.random.default_rng(0), clip.audio), AUDIO_RATE)
    return path, "demo clip (../shared absent)"


def run_loop(ms: int) -> None:
    """Spin the event loop for `ms` (a precise timer: coarse ones may fire 5% early)."""
    loop = QEventLoop()
    timer = QTimer()
    timer.setSingleShot(True)
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(loop.quit)
    timer.start(ms)
    loop.exec()


def measure_load(player: PlayerWidget, path: Path, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        player.unload()
        run_loop(5)
        start = time.perf_counter()
        player.load(str(path))
        player.view.repaint()  # the frame drawn, not merely set
        times.append(time.perf_counter() - start)
        run_loop(SOUND_DECODE_DELAY_MS + 40)  # the deferred sound decode (if any) runs outside the timing
    return statistics.median(times)


def measure_playback(player: PlayerWidget, view: AudioView) -> dict:
    gaps: list[float] = []
    clock = QElapsedTimer()
    last = [0]

    def probe_tick() -> None:
        now = clock.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        last[0] = now

    frames: list[int] = []
    driven: list[bool] = []
    player.frame_shown.connect(frames.append)
    player.clock.ticked.connect(lambda _t: driven.append(player.clock.audio_driven))
    player.seek(0.0)
    probe_timer = QTimer()
    probe_timer.setTimerType(Qt.TimerType.PreciseTimer)
    probe_timer.timeout.connect(probe_tick)
    wall = time.perf_counter()
    clock.start()
    probe_timer.start(PROBE_MS)
    player.play()
    run_loop(int(PLAY_SECONDS * 1000))
    probe_timer.stop()
    position = player.position()
    wall = time.perf_counter() - wall
    player.pause()
    player.frame_shown.disconnect(frames.append)
    stalls = [g - PROBE_MS for g in gaps[1:]]
    return {
        "play_wall_s": round(wall, 3),
        "clock_advance_s": round(position, 3),
        "frames_shown": len(frames),
        "frames_per_s": round(len(frames) / wall, 1),
        "max_stall_ms": round(max(stalls), 1),
        "p99_stall_ms": round(float(np.percentile(stalls, 99)), 1),
        "audio_driven_ticks": f"{sum(driven)}/{len(driven)}",
        "audio_notice": player.clock.audio_notice,
    }


def main() -> None:
    _app = QApplication.instance() or QApplication([])  # kept alive for the run
    with tempfile.TemporaryDirectory(prefix="avvp-bench-player-") as tmp:
        path, what = bench_clip(Path(tmp))
        info = probe(path)
        window = QWidget()
        layout = QVBoxLayout(window)
        player = PlayerWidget()
        view = AudioView()
        layout.addWidget(player, 3)
        layout.addWidget(view, 2)
        window.resize(900, 800)
        window.show()
        player.position_changed.connect(view.set_position)
        view.seek_requested.connect(player.seek)
        run_loop(50)

        player.load(str(path))  # warm-up: imports, first decoder open, device query
        load_s = measure_load(player, path)
        decode_s, (samples, rate, _) = timed(lambda: load_audio(path), repeat=5)
        view.set_audio(samples, rate, info.duration)  # warm-up
        set_audio_s, _ = timed(lambda: view.set_audio(samples, rate, info.duration), repeat=15)
        run_loop(50)
        playback = measure_playback(player, view)

        rng = np.random.default_rng(0)
        seek_times = []
        for t in rng.uniform(0, info.duration, 20):
            start = time.perf_counter()
            player.seek(float(t))
            player.view.repaint()
            seek_times.append(time.perf_counter() - start)
        window.close()

    figures = {
        "clip": what,
        "video": f"{info.width}x{info.height} @ {info.fps:.3f} fps, {info.frame_count} frames, {info.duration:.2f} s",
        "load_to_first_frame_ms": round(load_s * 1000, 1),
        "audio_decode_16k_ms": round(decode_s * 1000, 1),
        "audio_view_set_ms": round(set_audio_s * 1000, 1),
        "seek_median_ms": round(statistics.median(seek_times) * 1000, 1),
        **playback,
        "targets": TARGETS,
    }
    print(f"clip: {what}, {figures['video']}")
    print(f"load() to first frame painted: {figures['load_to_first_frame_ms']} ms "
          f"(target < {TARGETS['load_to_first_frame_ms']:.0f} ms: "
          f"{verdict(figures['load_to_first_frame_ms'] < TARGETS['load_to_first_frame_ms'])})")
    print(f"AudioView.set_audio (envelope + spectrogram): {figures['audio_view_set_ms']} ms "
          f"(target < {TARGETS['audio_view_set_ms']:.0f} ms: "
          f"{verdict(figures['audio_view_set_ms'] < TARGETS['audio_view_set_ms'])}); "
          f"16 kHz decode beside it: {figures['audio_decode_16k_ms']} ms")
    print(f"longest event-loop stall while playing {PLAY_SECONDS:.0f} s: {figures['max_stall_ms']} ms, "
          f"p99 {figures['p99_stall_ms']} ms (target < {TARGETS['max_stall_ms']:.0f} ms: "
          f"{verdict(figures['max_stall_ms'] < TARGETS['max_stall_ms'])}); "
          f"{figures['frames_shown']} frames shown ({figures['frames_per_s']}/s), clock advanced "
          f"{figures['clock_advance_s']} s in {figures['play_wall_s']} s, "
          f"clock driven by the sound on {figures['audio_driven_ticks']} ticks"
          f"{' (' + figures['audio_notice'] + ')' if figures['audio_notice'] else ''}")
    print(f"random seek + paint: median {figures['seek_median_ms']} ms")
    save("player", figures)


if __name__ == "__main__":
    main()
