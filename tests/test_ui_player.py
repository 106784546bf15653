"""The player, its clock and the audio view (pytest-qt, offscreen).

The frame shown for a time must be the frame OpenCV gives at `time_to_frame`
of that time (read sequentially, the reference), playback must advance and
cross segments, and a missing sound, device or file must never stop the picture.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
from tests.media_reference import sequential_rgb_frames
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from annotation.demo import h264_encoder
from annotation.media import frame_to_time, probe, time_to_frame
from ui import audio_output
from ui.audio_output import NO_DEVICE, NO_TRACK, describe_import_failure
from ui.audio_view import AudioView, compute_audio_view, envelope, load_audio
from ui.media_clock import MediaClock
from ui.player import NO_VIDEO, PlayerWidget, format_time

REPO = Path(__file__).resolve().parents[1]
SYNTH_FPS, SYNTH_SECONDS, SYNTH_RATE = 10, 10, 16000


def _write_clip(path: Path, with_audio: bool) -> Path:
    """64x48 clip whose frame i is a flat grey of level 8 * i (so a frame names itself)."""
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream(h264_encoder(), rate=SYNTH_FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=SYNTH_RATE, layout="mono") if with_audio else None
        for i in range(SYNTH_FPS * SYNTH_SECONDS):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * (i % 30), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, SYNTH_FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            t = np.arange(SYNTH_RATE * SYNTH_SECONDS) / SYNTH_RATE
            wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (t % 1 < 0.5)).astype(np.float32)
            for start in range(0, len(wave), 1024):
                chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024].copy(), format="fltp", layout="mono")
                chunk.rate, chunk.pts, chunk.time_base = SYNTH_RATE, start, Fraction(1, SYNTH_RATE)
                container.mux(audio.encode(chunk))
            container.mux(audio.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "av": _write_clip(folder / "with_audio.mp4", True),
        "silent": _write_clip(folder / "no_audio.mp4", False),
    }


@pytest.fixture
def player(qtbot) -> PlayerWidget:
    """Silent (timer clock), so timings do not depend on the machine's sound device."""
    widget = PlayerWidget(sound=False)
    qtbot.addWidget(widget)
    widget.resize(480, 400)
    widget.show()
    return widget


# --------------------------------------------------------------------------- frames


def test_seek_shows_the_frame_of_that_time(player: PlayerWidget, real_clip: Path) -> None:
    reference = sequential_rgb_frames(real_clip)
    player.load(str(real_clip))
    info = player.info
    assert info is not None and len(reference) == info.frame_count
    for t in (4.2, 0.0, 0.51, 3.3, 9.99, 10.03, 1.0, 1.0 + 1e-4, 7.77):
        player.seek(t)
        index = time_to_frame(t, info.fps, info.frame_count)
        assert player.current_frame_index() == index
        np.testing.assert_array_equal(player.displayed_frame(), reference[index], err_msg=f"t={t}")


def test_load_shows_first_frame_synchronously(player: PlayerWidget, clips) -> None:
    shown: list[int] = []
    player.frame_shown.connect(shown.append)
    player.load(str(clips["av"]))
    assert shown == [0]
    assert player.displayed_frame() is not None and player.displayed_frame().mean() < 2  # grey level 0
    assert player.duration() == pytest.approx(10.0, abs=0.1)
    assert player.time_label.text() == f"00:00.00 / {format_time(player.duration())}"
    assert player.segment_label.text() == "segment 0 · 0–1 s"  # numbered like the timelines' columns


# --------------------------------------------------------------------------- transport


def test_play_advances_crosses_a_segment_and_pauses(qtbot, player: PlayerWidget, clips) -> None:
    player.load(str(clips["av"]))
    player.seek(0.8)
    frames: list[int] = []
    segments: list[int] = []
    playing: list[bool] = []
    player.frame_shown.connect(frames.append)
    player.segment_changed.connect(segments.append)
    player.playing_changed.connect(playing.append)
    start = time.perf_counter()
    player.play()
    qtbot.wait(500)
    elapsed = time.perf_counter() - start
    moved = player.position() - 0.8
    # Loose bounds (busy CI machines); a sound clock may start up to AUDIO_START_TIMEOUT late.
    assert 0.15 < moved <= elapsed + 0.05
    assert len(frames) >= 2 and frames == sorted(frames)
    assert segments[:1] == [1]
    player.pause()
    paused_at = player.position()
    qtbot.wait(120)
    assert player.position() == paused_at
    assert playing == [True, False] and not player.is_playing()
    assert player.current_frame_index() == time_to_frame(paused_at, SYNTH_FPS, SYNTH_FPS * SYNTH_SECONDS)


def test_step_frame(player: PlayerWidget, clips) -> None:
    player.load(str(clips["av"]))
    player.seek(frame_to_time(40, SYNTH_FPS))
    player.step_frame(1)
    assert player.current_frame_index() == 41
    assert player.displayed_frame()[0, 0, 0] == pytest.approx(8 * 11, abs=3)  # frame 41 -> grey 88
    player.step_frame(-3)
    assert player.current_frame_index() == 38
    player.seek(0.0)
    player.step_frame(-1)
    assert player.current_frame_index() == 0
    player.seek(player.duration())
    player.step_frame(5)
    assert player.current_frame_index() == SYNTH_FPS * SYNTH_SECONDS - 1
    player.seek(2.0)
    player.play()
    player.step_frame(1)
    assert not player.is_playing() and player.current_frame_index() == 21


def test_step_segment(player: PlayerWidget, clips) -> None:
    player.load(str(clips["av"]))
    segments: list[int] = []
    player.segment_changed.connect(segments.append)
    player.seek(2.5)
    player.step_segment(-1)  # 0.5 s into segment 2: to its start
    assert player.position() == pytest.approx(2.0)
    player.step_segment(-1)  # at a start: the previous segment
    assert player.position() == pytest.approx(1.0)
    player.seek(1.2)
    player.step_segment(-1)  # within 0.3 s of the start: previous segment
    assert player.position() == pytest.approx(0.0)
    player.step_segment(-1)
    assert player.position() == 0.0
    player.step_segment(3)
    assert player.position() == pytest.approx(3.0) and player.current_segment() == 3
    player.seek(8.6)
    player.step_segment(1)
    assert player.current_segment() == 9
    player.step_segment(1)  # past the last segment: the end
    assert player.position() == pytest.approx(player.duration())
    assert segments == [2, 1, 0, 3, 8, 9]


def test_segment_bar_click_seeks_to_segment_start(qtbot, player: PlayerWidget, clips) -> None:
    player.load(str(clips["av"]))
    bar = player.segment_bar
    x = int(bar.cell_rect(6).center().x())
    QTest.mouseClick(bar, Qt.MouseButton.LeftButton, pos=QPoint(x, bar.height() // 2))
    assert player.position() == pytest.approx(6.0) and player.current_segment() == 6


def test_clock_finishes_at_the_end(qtbot) -> None:
    clock = MediaClock(sound=False)
    clock.duration = 0.25
    ticks: list[float] = []
    clock.ticked.connect(ticks.append)
    with qtbot.waitSignal(clock.finished, timeout=3000):
        clock.play()
    assert clock.position() == 0.25 and not clock.is_playing()
    assert ticks[-1] == 0.25 and ticks == sorted(ticks) and len(ticks) >= 3
    clock.seek(0.1)
    assert clock.position() == pytest.approx(0.1)
    clock.play()  # from 0.1, not from the end
    qtbot.wait(30)
    assert 0.1 < clock.position() < 0.25
    clock.pause()


# --------------------------------------------------------------------------- no sound, no video


def test_clip_without_audio_notices_and_plays(qtbot, player: PlayerWidget, clips) -> None:
    notices: list[str] = []
    player.notice.connect(notices.append)
    player.load(str(clips["silent"]))
    assert notices == [NO_TRACK] and player.clock.audio_notice == NO_TRACK
    player.play()
    qtbot.wait(250)
    assert player.position() > 0.1 and player.current_frame_index() > 0
    player.pause()


def test_no_audio_device_notices_and_plays_on_the_timer(qtbot, clips, monkeypatch) -> None:
    monkeypatch.setattr("ui.player.audio_unavailable_reason", lambda: NO_DEVICE)
    player = PlayerWidget()  # with sound, as in the application
    qtbot.addWidget(player)
    notices: list[str] = []
    player.notice.connect(notices.append)
    player.load(str(clips["av"]))
    assert notices == [NO_DEVICE] and player.clock.audio_notice == NO_DEVICE
    player.play()
    qtbot.wait(250)
    assert not player.clock.audio_driven
    assert player.position() > 0.1
    player.pause()


def test_qt_multimedia_import_failure_is_described(monkeypatch) -> None:
    assert describe_import_failure("libpulse.so.0: cannot open shared object file") == (
        "No sound: Qt Multimedia cannot load (libpulse.so.0 missing; apt-get install libpulse0)"
    )
    monkeypatch.setattr(audio_output, "_import_checked", False)
    monkeypatch.setattr(audio_output, "_import_failure", None)
    monkeypatch.setitem(sys.modules, "PySide6.QtMultimedia", None)  # import now raises ImportError
    reason = audio_output.audio_unavailable_reason()
    assert reason is not None and reason.startswith("No sound: Qt Multimedia cannot load")
    assert audio_output.AudioOutput().start(0.0) is False  # never raises


def test_load_none_missing_and_bad_files(qtbot, player: PlayerWidget, tmp_path: Path) -> None:
    notices: list[str] = []
    shown: list[int] = []
    player.notice.connect(notices.append)
    player.frame_shown.connect(shown.append)
    player.load(None)
    assert player.view.placeholder == NO_VIDEO and player.displayed_frame() is None
    assert player.duration() == 10.0 and player.info is None and shown == [-1]
    player.seek(4.2)
    assert player.current_segment() == 4 and player.current_frame_index() == -1
    player.step_frame(1)
    assert player.position() == pytest.approx(4.24)

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    player.load(str(bad))
    assert "Cannot play this clip" in player.view.placeholder and player.duration() == 10.0
    assert notices and "broken.mp4" in notices[-1]
    player.load(str(tmp_path / "missing.mp4"))
    assert "no such file" in player.view.placeholder
    player.play()
    qtbot.wait(100)
    assert player.position() > 0.0  # the timeline still runs
    player.unload()
    assert player.position() == 0.0 and not player.is_playing()


# --------------------------------------------------------------------------- audio view


def test_audio_view_spans_the_clip(qtbot, real_clip: Path) -> None:
    view = AudioView()
    qtbot.addWidget(view)
    info = probe(real_clip)
    samples, rate, why = load_audio(real_clip)
    assert why is None and rate == 16000
    view.set_audio(samples, rate, info.duration)
    x, _ = view.waveform_item.getData()
    assert x.min() == pytest.approx(0.0, abs=0.05) and x.max() == pytest.approx(info.duration, abs=0.05)
    rect = view.spectrogram_item.mapRectToParent(view.spectrogram_item.boundingRect())
    assert rect.left() == pytest.approx(0.0, abs=0.05) and rect.right() == pytest.approx(info.duration, abs=0.05)
    assert rect.top() == 0.0 and rect.bottom() == pytest.approx(8.0)  # kHz
    assert view.wave_plot.vb.viewRange()[0] == pytest.approx([0.0, info.duration])


def test_audio_view_numbers_are_right_and_fast() -> None:
    rate = 16000
    t = np.arange(rate * 10) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    low, high = envelope(tone, 500)
    assert len(low) == 500 and low.min() == pytest.approx(-0.5, abs=1e-3) and high.max() == pytest.approx(0.5, abs=1e-3)
    start = time.perf_counter()
    data = compute_audio_view(tone, rate, 10.0)
    assert time.perf_counter() - start < 0.1  # well under 30 ms on a normal machine
    peak_row = int(np.argmax(data.spectrogram[:, 500]))
    assert peak_row * (rate / 2) / (data.spectrogram.shape[0] - 1) == pytest.approx(1000, abs=40)
    assert data.spectrogram.dtype == np.uint8 and data.spectrogram.shape[1] == pytest.approx(1000, abs=2)


def _click_view_at(view: AudioView, plot, t: float) -> None:
    scene = plot.vb.mapViewToScene(QPointF(t, 0.5 * sum(plot.vb.viewRange()[1])))
    point = view.graphics.mapFromScene(scene)
    QTest.mouseClick(view.graphics.viewport(), Qt.MouseButton.LeftButton, pos=point)


def test_click_on_audio_view_requests_a_seek(qtbot, clips) -> None:
    view = AudioView()
    qtbot.addWidget(view)
    view.resize(700, 260)
    view.show()
    qtbot.waitExposed(view)
    samples, rate, _ = load_audio(clips["av"])
    view.set_audio(samples, rate, 10.0)
    for plot, t in ((view.wave_plot, 3.5), (view.spec_plot, 7.25)):
        with qtbot.waitSignal(view.seek_requested, timeout=1000) as blocker:
            _click_view_at(view, plot, t)
        assert blocker.args[0] == pytest.approx(t, abs=10.0 / 600)  # about one pixel
    before = view.wave_plot.vb.viewRange()[0]
    QTest.mouseClick(view.graphics.viewport(), Qt.MouseButton.RightButton, pos=QPoint(300, 40))  # no menu
    assert view.wave_plot.vb.viewRange()[0] == before


def _wheel(view: AudioView, at: QPointF, steps: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    event = QWheelEvent(at, view.graphics.viewport().mapToGlobal(at), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.graphics.viewport(), event)


def test_wheel_zooms_and_pans_time_on_both_plots_and_the_spectrogram_frequency(qtbot, clips) -> None:
    view = AudioView()
    qtbot.addWidget(view)
    view.resize(700, 260)
    view.show()
    qtbot.waitExposed(view)
    samples, rate, _ = load_audio(clips["av"])
    view.set_audio(samples, rate, 10.0)
    at = QPointF(300, 40)
    pointer = view.wave_plot.vb.mapSceneToView(view.graphics.mapToScene(at.toPoint())).x()
    _wheel(view, at, 2)  # two steps in: 1.25^2 narrower, the time under the pointer stays put
    low, high = view.wave_plot.vb.viewRange()[0]
    assert high - low == pytest.approx(10.0 / 1.25 ** 2, rel=1e-6)
    assert view.spec_plot.vb.viewRange()[0] == pytest.approx([low, high])
    assert (pointer - low) / (high - low) == pytest.approx(pointer / 10.0, abs=1e-6)
    _wheel(view, at, 1, Qt.KeyboardModifier.ShiftModifier)  # pan
    assert view.window[0] < low and view.window[1] - view.window[0] == pytest.approx(high - low)
    spec_at = view.graphics.mapFromScene(view.spec_plot.vb.mapViewToScene(QPointF(5.0, 2.0)))
    _wheel(view, QPointF(spec_at), 3, Qt.KeyboardModifier.ControlModifier)  # frequency zoom on the spectrogram
    bottom, top = view.spec_plot.vb.viewRange()[1]
    assert top - bottom == pytest.approx(view.data.top_hz / 1000 / 1.25 ** 3, rel=1e-6)
    view.zoom(100.0)  # never deeper than MIN_WINDOW_SECONDS
    assert view.window[1] - view.window[0] == pytest.approx(0.25)
    view.set_position(9.8)  # the zoomed window pages along with the playhead
    assert view.window[0] <= 9.8 <= view.window[1]
    view.reset_zoom()
    assert view.window == (0.0, 10.0) and view.spec_plot.vb.viewRange()[1][1] == pytest.approx(view.data.top_hz / 1000)


def test_audio_view_without_audio_and_playhead(qtbot) -> None:
    view = AudioView()
    qtbot.addWidget(view)
    view.set_audio(None, 16000, 10.03)
    assert view.message.isVisible() and view.data is None
    assert view.wave_plot.vb.viewRange()[0] == pytest.approx([0.0, 10.03])
    view.set_position(9.5)
    assert all(line.value() == 9.5 for line in view.playheads)
    assert view.regions[0].getRegion() == pytest.approx((9.0, 10.03))
    assert not view.regions[0].movable
    assert load_audio(None)[2] == "No video file for this clip"


# --------------------------------------------------------------------------- real sound (PulseAudio null sink)

_AUDIO_CLOCK_PROBE = r"""
import json, sys
from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from ui.player import PlayerWidget

def spin(ms):
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()

player = PlayerWidget()
notices = []
player.notice.connect(notices.append)
player.load(sys.argv[1])
spin(300)  # the sound is decoded after the first frame
clock = player.clock
seen = {"notices": notices, "has_sound": clock.has_sound, "driven": 0, "ticks": 0, "positions": [], "frames": []}
def tick(pos):
    seen["driven"] += clock.audio_driven
    seen["ticks"] += 1
    seen["positions"].append(pos)
clock.ticked.connect(tick)
player.frame_shown.connect(seen["frames"].append)
wall = QElapsedTimer()
wall.start()
player.play()
spin(1500)
seen["audio"] = clock._audio.position()
seen["clock"] = player.position()
seen["wall"] = wall.elapsed() / 1000
player.pause()
print("RESULT " + json.dumps(seen))
"""


@pytest.fixture(scope="module")
def pulse_server(tmp_path_factory):
    """A private PulseAudio server with a null sink, on a unix socket in a temp folder."""
    binary = shutil.which("pulseaudio")
    if binary is None:
        pytest.skip("pulseaudio is not installed (apt-get install pulseaudio): the audio-clock path is untested here")
    folder = tmp_path_factory.mktemp("pulse")
    socket = folder / "native"
    env = {**os.environ, "HOME": str(folder), "XDG_RUNTIME_DIR": str(folder), "XDG_CONFIG_HOME": str(folder),
           "PULSE_RUNTIME_PATH": str(folder)}
    server = subprocess.Popen(
        [binary, "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no",
         "-L", "module-null-sink sink_name=avvp_null",
         "-L", f"module-native-protocol-unix socket={socket} auth-anonymous=1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 5
    while not socket.exists() and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not socket.exists():
        server.kill()
        pytest.skip(f"could not start a private pulseaudio server: {server.communicate()[1][-300:]}")
    # An idle null sink renders in ~2 s blocks, so a new stream may wait up to 2 s to
    # start; a low-latency stream of silence keeps it ticking once the current block
    # ends (hence the wait). Real devices need no such help.
    keepalive = None
    if shutil.which("pacat"):
        keepalive = subprocess.Popen(
            ["pacat", "--latency-msec=20", "--raw", "/dev/zero"], env={**env, "PULSE_SERVER": f"unix:{socket}"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(2.1)
    yield f"unix:{socket}"
    for process in (keepalive, server):
        if process is not None:
            process.terminate()
            process.wait(5)


def test_audio_clock_follows_a_real_sound_output(pulse_server: str, clips) -> None:
    """The whole path with a real (null) output: decode, QAudioSink, clock slaved to it, frames."""
    env = {**os.environ, "PULSE_SERVER": pulse_server, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _AUDIO_CLOCK_PROBE, str(clips["av"])], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, out.stdout + out.stderr
    seen = json.loads(lines[0][len("RESULT "):])
    assert seen["notices"] == [] and seen["has_sound"]
    assert seen["driven"] > seen["ticks"] // 2, f"the clock followed the sound on {seen['driven']}/{seen['ticks']} ticks"
    assert seen["positions"] == sorted(seen["positions"])
    assert 0.3 < seen["clock"] <= seen["wall"] + 0.1  # the output may take a while to start
    assert seen["clock"] == pytest.approx(seen["audio"], abs=0.1)
    assert len(seen["frames"]) >= 5 and seen["frames"] == sorted(seen["frames"])
