"""The one decode path (OpenCV frames, PyAV audio) and the time -> frame -> segment mapping."""
from __future__ import annotations

from pathlib import Path

from tests.media_reference import sequential_rgb_frames
import numpy as np
import pytest

from annotation.media import (
    FrameReader,
    MediaError,
    decode_audio,
    frame_to_segment,
    frame_to_time,
    probe,
    sample_frame_indices,
    sample_frames,
    segment_to_frame_range,
    time_to_frame,
    time_to_segment,
)

REAL_FPS = 359 / 12  # 29.9166..., the real clip's rate


@pytest.fixture(scope="module")
def sequential_frames(real_clip: Path) -> list[np.ndarray]:
    """Every frame of the real clip by plain sequential OpenCV reads (the reference)."""
    return sequential_rgb_frames(real_clip)


def test_probe_real_clip(real_clip: Path) -> None:
    info = probe(real_clip)
    assert info.path == real_clip
    assert info.fps == pytest.approx(29.9167, abs=1e-3)
    assert info.frame_count == 300
    assert (info.width, info.height) == (320, 240)
    assert info.has_audio and info.audio_rate == 44100 and info.audio_channels == 2
    assert info.duration == pytest.approx(10.03, abs=0.01)
    assert info.has_video


def test_frame_reader_matches_sequential_decode(real_clip: Path, sequential_frames: list[np.ndarray]) -> None:
    assert len(sequential_frames) == 300
    with FrameReader(real_clip) as reader:
        assert reader.frame_count == 300
        for index in (150, 3, 299, 0, 77, 78, 100, 42):  # random order, a step, a short jump
            frame = reader.read(index)
            assert frame.dtype == np.uint8 and frame.shape == (240, 320, 3)
            np.testing.assert_array_equal(frame, sequential_frames[index], err_msg=f"frame {index}")
        with pytest.raises(IndexError):
            reader.read(300)


def test_sequential_reads_do_not_seek(real_clip: Path, sequential_frames: list[np.ndarray]) -> None:
    with FrameReader(real_clip) as reader:
        for index in range(0, 60):
            np.testing.assert_array_equal(reader.read(index), sequential_frames[index])
        again = reader.read(59)  # cached last frame
        reader.read(65)  # short jump ahead decodes through
        assert reader.seeks == 0
        np.testing.assert_array_equal(again, sequential_frames[59])
        reader.read(10)  # backwards needs a seek
        assert reader.seeks == 1


def test_frame_reader_closed(real_clip: Path) -> None:
    reader = FrameReader(real_clip)
    reader.close()
    reader.close()
    with pytest.raises(MediaError):
        reader.read(0)


def test_sample_frames(real_clip: Path, sequential_frames: list[np.ndarray]) -> None:
    assert sample_frame_indices(300, 10) == [0, 33, 66, 100, 133, 166, 199, 233, 266, 299]
    frames = sample_frames(real_clip, 10)
    assert frames.shape == (10, 240, 320, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[3], sequential_frames[100])


def test_decode_audio(real_clip: Path) -> None:
    mono, rate = decode_audio(real_clip, rate=16000)
    assert rate == 16000 and mono.dtype == np.float32 and mono.ndim == 1
    assert mono.shape[0] / rate == pytest.approx(10.03, abs=0.05)
    stereo, _ = decode_audio(real_clip, rate=16000, mono=False)
    assert stereo.shape == (2, mono.shape[0])
    np.testing.assert_allclose(mono, stereo.mean(axis=0), atol=1e-6)  # plain mean, not /sqrt(2)
    assert 0.0 < np.abs(mono).max() < 1.5  # AAC may overshoot 1.0 slightly


def test_time_to_frame_edges() -> None:
    assert time_to_frame(0.0, REAL_FPS, 300) == 0
    assert time_to_frame(-1.0, REAL_FPS, 300) == 0
    assert time_to_frame(9.999, REAL_FPS, 300) == 299
    assert time_to_frame(10.0, REAL_FPS, 300) == 299
    assert time_to_frame(100.0, REAL_FPS, 300) == 299
    assert time_to_frame(1.0, 12.0, 120) == 12
    assert time_to_frame(1.0 - 1e-6, 12.0, 120) == 11
    for i in range(300):  # start of a frame maps back to that frame
        assert time_to_frame(frame_to_time(i, REAL_FPS), REAL_FPS, 300) == i
    with pytest.raises(ValueError):
        time_to_frame(1.0, 0.0, 300)
    with pytest.raises(ValueError):
        time_to_frame(float("nan"), 30.0, 300)


def test_time_to_segment_edges() -> None:
    assert time_to_segment(0.0) == 0
    assert time_to_segment(-0.5) == 0
    assert time_to_segment(0.999) == 0
    assert time_to_segment(1.0) == 1
    assert time_to_segment(9.999) == 9
    assert time_to_segment(10.0) == 9
    assert time_to_segment(10.03) == 9
    assert time_to_segment(2.5, duration=5.0, segments=5) == 2


def test_segment_frame_ranges_partition_the_clip() -> None:
    for fps, count in ((REAL_FPS, 300), (12.0, 120), (8.0, 80), (25.0, 251), (30.0, 299)):
        ranges = [segment_to_frame_range(s, fps, count) for s in range(10)]
        assert ranges[0].start == 0 and ranges[-1].stop == count
        for a, b in zip(ranges, ranges[1:]):
            assert a.stop == b.start
        for seg, frames in enumerate(ranges):
            assert all(frame_to_segment(i, fps) == seg for i in frames)
    assert segment_to_frame_range(1, 12.0, 120) == range(12, 24)
    assert segment_to_frame_range(9, REAL_FPS, 300) == range(270, 300)  # includes frames past 10.0 s
    with pytest.raises(ValueError):
        segment_to_frame_range(10, 12.0, 120)


def test_bad_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("this is text, not an mp4\n")
    for call in (probe, decode_audio, FrameReader):
        with pytest.raises(MediaError) as info:
            call(bad)
        assert "not_a_video.mp4" in str(info.value)
        assert info.value.path == bad
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "missing.mp4")
