"""Sound for the player: a QAudioSink fed from a decoded numpy buffer.

Why a hand-fed sink rather than QMediaPlayer: the picture comes from our one
frame decoder (OpenCV) and the sound from our one audio decoder (PyAV), so the
sink only plays PCM we already hold, and its position can drive the one clock.

Qt Multimedia is optional at run time: its import fails without libpulse.so.0,
and a machine may have no output device. `audio_unavailable_reason()` says why
there is no sound in words a user can act on; nothing here raises or blocks
because of audio.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, Signal, Slot

NO_TRACK = "This clip has no audio track"
NO_DEVICE = "No sound: no audio output device"
SOUND_OFF = "Sound is switched off"
_LIBPULSE_HINT = "libpulse.so.0 missing; apt-get install libpulse0"
# Sink errors that leave sound working. Compared by name: Qt 6.12 moved the enum
# from QAudio to QtAudio, and the two Python enum types do not compare equal.
_HARMLESS = ("NoError", "UnderrunError")

_import_failure: str | None = None
_import_checked = False


def _multimedia_import_failure() -> str | None:
    """Why `PySide6.QtMultimedia` cannot be imported (checked once), or None."""
    global _import_failure, _import_checked
    if not _import_checked:
        _import_checked = True
        try:
            import PySide6.QtMultimedia  # noqa: F401
        except ImportError as exc:
            _import_failure = describe_import_failure(str(exc))
    return _import_failure


def describe_import_failure(error: str) -> str:
    """The notice for an ImportError of QtMultimedia, with the fix when it is libpulse."""
    detail = _LIBPULSE_HINT if "libpulse" in error else error
    return f"No sound: Qt Multimedia cannot load ({detail})"


def audio_unavailable_reason() -> str | None:
    """None when sound can play, else the reason as a short user-facing sentence."""
    failure = _multimedia_import_failure()
    if failure:
        return failure
    try:
        from PySide6.QtMultimedia import QMediaDevices

        if not QMediaDevices.audioOutputs():
            return NO_DEVICE
    except Exception as exc:  # a broken backend must never take the player down
        return f"No sound: audio backend error ({exc})"
    return None


def to_pcm16(samples: np.ndarray) -> bytes:
    """float32 mono samples in [-1, 1] -> little-endian int16 PCM (clipped, not wrapped)."""
    scaled = np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767.0
    return np.rint(scaled).astype("<i2").tobytes()


class AudioOutput(QObject):
    """Plays one mono int16 buffer from any offset; reports how far it has played.

    `position()` is offset + the sink's processedUSecs(): with Qt 6's PulseAudio
    backend that counts audio handed on to the server (it stalls while the
    stream starts up, then advances at the device rate), so the clock waits for
    it to move before trusting it. The sink pulls from a QBuffer on its own.
    """

    failed = Signal(str)  # the sink stopped with an error; sound is off until the next start()

    BUFFER_SECONDS = 0.1  # small sink buffer: low latency between clock and sound

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pcm = b""
        self._rate = 0
        self._sink = None
        self._buffer: QBuffer | None = None
        self._offset = 0.0
        self._suspended = False
        self._speed = 1.0

    # ------------------------------------------------------------------ data

    def set_samples(self, samples: np.ndarray | None, rate: int) -> None:
        """Hold `samples` (float32 mono) for playback; None clears."""
        self.stop()
        if samples is None or rate <= 0 or len(samples) == 0:
            self._pcm, self._rate = b"", 0
        else:
            self._pcm, self._rate = to_pcm16(samples), int(rate)

    @property
    def has_samples(self) -> bool:
        return bool(self._pcm)

    @property
    def duration(self) -> float:
        return len(self._pcm) / 2 / self._rate if self._rate else 0.0

    def set_speed(self, speed: float) -> None:
        """Playback speed for the next start(): the samples are declared at rate x speed, so the
        sound plays faster or slower and its pitch moves with it (as a tape would)."""
        self._speed = float(speed)

    # ------------------------------------------------------------------ transport

    def start(self, offset: float) -> bool:
        """Play from `offset` seconds; False (and no sound) when that is impossible."""
        self.stop()
        if not self._pcm or audio_unavailable_reason() is not None:
            return False
        try:
            from PySide6.QtMultimedia import QAudioFormat, QAudioSink, QMediaDevices

            device = QMediaDevices.defaultAudioOutput()
            if device.isNull():
                return False
            fmt = QAudioFormat()
            fmt.setSampleRate(max(1000, int(round(self._rate * self._speed))))
            fmt.setChannelCount(1)
            fmt.setSampleFormat(QAudioFormat.SampleFormat.Int16)
            first = min(len(self._pcm) // 2, max(0, int(round(offset * self._rate))))
            self._offset = first / self._rate
            self._buffer = QBuffer(self)
            self._buffer.setData(QByteArray(self._pcm[2 * first :]))
            self._buffer.open(QIODevice.OpenModeFlag.ReadOnly)
            sink = QAudioSink(device, fmt, self)
            sink.setBufferSize(int(fmt.sampleRate() * 2 * self.BUFFER_SECONDS))
            sink.stateChanged.connect(self._on_state)
            self._sink = sink
            sink.start(self._buffer)
            if sink.error().name not in _HARMLESS:
                self._fail(f"cannot open the audio output ({sink.error().name})")
                return False
        except Exception as exc:  # defensive: backends differ between machines
            self._fail(f"audio output error ({exc})")
            return False
        return True

    def pause(self) -> None:
        if self._sink is not None and not self._suspended:
            self._sink.suspend()
            self._suspended = True

    def resume(self) -> bool:
        """Continue after pause(); False when there is nothing to resume."""
        if self._sink is None or not self._suspended:
            return False
        self._sink.resume()
        self._suspended = False
        return True

    def stop(self) -> None:
        sink, buffer = self._sink, self._buffer
        self._sink, self._buffer, self._suspended = None, None, False
        if sink is not None:
            try:
                sink.stateChanged.disconnect(self._on_state)
            except (RuntimeError, TypeError):
                pass
            sink.stop()
            sink.deleteLater()
        if buffer is not None:
            buffer.close()
            buffer.deleteLater()

    @property
    def active(self) -> bool:
        return self._sink is not None

    @property
    def suspended(self) -> bool:
        return self._suspended

    def position(self) -> float | None:
        """Seconds into the clip handed to the device so far; None when not playing."""
        if self._sink is None:
            return None
        return self._offset + self._sink.processedUSecs() / 1e6 * self._speed

    # ------------------------------------------------------------------ errors

    @Slot()
    def _on_state(self) -> None:
        """Connected without the state argument: PySide 6.11 cannot convert QAudio::State."""
        sink = self._sink
        if sink is not None and sink.error().name not in _HARMLESS:
            self._fail(f"audio output failed ({sink.error().name})")

    def _fail(self, why: str) -> None:
        self.stop()
        self.failed.emit(f"No sound: {why}")
