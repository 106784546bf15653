"""The one clock of playback: picture, playhead and timelines all read it.

While sound plays, the sound decides the time (people notice a picture that
runs ahead of its sound long before one that runs behind); otherwise a
QElapsedTimer does. The audio position is coarse (it moves in device periods)
and starts late (the output stream takes a while to start), so:
- after play() or a seek the clock holds still until the sound really moves
  (at most AUDIO_START_TIMEOUT, then it runs on the timer meanwhile);
- from then on it runs on the elapsed timer, nudged toward each fresh audio
  reading; when the two disagree by more than RESYNC_SECONDS it jumps ahead
  to the sound, or holds still while a late sound catches up;
- the reported position never goes backwards while playing.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QElapsedTimer, QObject, Qt, QTimer, Signal

from ui.audio_output import NO_TRACK, SOUND_OFF, AudioOutput, audio_unavailable_reason

TICK_MS = 16  # ~60 Hz
AUDIO_START_TIMEOUT = 1.0  # seconds to wait for sound to start before running on the timer
RESYNC_SECONDS = 0.15  # larger disagreement with the sound: jump to it
SLEW = 0.1  # fraction of a smaller disagreement corrected per fresh audio reading
SPEEDS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
MIN_SPEED, MAX_SPEED = SPEEDS[0], SPEEDS[-1]


class MediaClock(QObject):
    """Position in seconds of the media being played; see the module docstring."""

    ticked = Signal(float)  # the position, ~60 times a second while playing
    playing_changed = Signal(bool)
    finished = Signal()  # reached the end (the clock pauses there)
    notice = Signal(str)  # audio trouble found while playing (audio_notice is set too)

    def __init__(self, parent: QObject | None = None, *, sound: bool = True):
        super().__init__(parent)
        self._duration = 0.0
        self._pos = 0.0  # position while paused; timer base while playing
        self._last = 0.0  # last position reported while playing (monotonic guard)
        self._playing = False
        self._elapsed = QElapsedTimer()
        self._waiting_for_audio = False
        self._wait = QElapsedTimer()
        self._last_audio: float | None = None
        self._audio_moves = 0
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._sound_enabled = sound
        self._audio = AudioOutput(self)
        self._audio.failed.connect(self._on_audio_failed)
        self.audio_notice: str | None = None
        self._speed = 1.0
        self._range: tuple[float, float, bool] | None = None  # (start, end, loop) of a range being played

    # ------------------------------------------------------------------ media

    @property
    def duration(self) -> float:
        return self._duration

    @duration.setter
    def duration(self, seconds: float) -> None:
        self._duration = max(0.0, float(seconds))
        if self._pos > self._duration:
            self.seek(self._duration)

    def set_audio(self, samples: np.ndarray | None, rate: int = 0, notice: str | None = None) -> None:
        """Sound for the current media (float32 mono); None = silent, with `notice` saying why.

        With samples, the notice is whatever keeps them from being heard (no
        Qt Multimedia, no device), or None when they will be heard.
        """
        was_playing = self._playing
        position = self.position()
        self._audio.set_samples(samples if self._sound_enabled else None, rate)
        if samples is None:
            self.audio_notice = notice or NO_TRACK
        elif not self._sound_enabled:
            self.audio_notice = notice or SOUND_OFF
        else:
            self.audio_notice = audio_unavailable_reason()
        if was_playing:  # sound arrived (or left) mid-play: carry on from here
            self._restart_at(position)

    def clear(self) -> None:
        """No media: stopped at 0, silent, duration 0."""
        self.pause()
        self._audio.set_samples(None, 0)
        self.audio_notice = None
        self._duration = 0.0
        self._pos = self._last = 0.0
        self._range = None  # a loop or play-once range belongs to the clip it was set on

    @property
    def has_sound(self) -> bool:
        return self._audio.has_samples

    @property
    def audio_driven(self) -> bool:
        """Whether the position currently follows the sound output."""
        return self._playing and self._audio.active and not self._waiting_for_audio

    # ------------------------------------------------------------------ transport

    def is_playing(self) -> bool:
        return self._playing

    def position(self) -> float:
        if not self._playing:
            return self._pos
        if self._waiting_for_audio:
            return self._pos
        t = self._pos + self._elapsed.nsecsElapsed() / 1e9 * self._speed
        t = min(self._duration, max(self._last, t))
        self._last = t
        return t

    def play(self) -> None:
        if self._playing or self._duration <= 0:
            return
        if self._pos >= self._duration - 1e-3:
            self._pos = 0.0  # play at the end starts over, like media players
        self._playing = True
        self._last = self._pos
        if not (self._audio.suspended and self._audio.resume() and self._await_audio()):
            self._restart_at(self._pos)
        self._timer.start()
        self.playing_changed.emit(True)

    def pause(self) -> None:
        if not self._playing:
            return
        self._pos = self.position()
        self._playing = False
        self._waiting_for_audio = False
        self._timer.stop()
        self._audio.pause()
        self.playing_changed.emit(False)

    def toggle(self) -> None:
        self.pause() if self._playing else self.play()

    @property
    def speed(self) -> float:
        return self._speed

    def set_speed(self, speed: float) -> None:
        """Media seconds per wall-clock second (0.25-2); playing goes on from where it is."""
        position = self.position()
        self._speed = min(MAX_SPEED, max(MIN_SPEED, float(speed)))
        self._audio.set_speed(self._speed)
        if self._playing:
            self._restart_at(position)

    @property
    def range(self) -> tuple[float, float, bool] | None:
        return self._range

    def play_range(self, start: float, end: float, loop: bool = False) -> None:
        """Play from `start` to `end`, then stop there, or (`loop`) start over until clear_range()."""
        start, end = max(0.0, start), min(self._duration, end)
        if end <= start:
            return
        self._range = (start, end, loop)
        self.seek(start)
        self.play()

    def clear_range(self) -> None:
        self._range = None

    def seek(self, t: float) -> None:
        t = min(self._duration, max(0.0, float(t)))
        if self._playing:
            self._restart_at(t)
        else:
            self._pos = self._last = t
            self._audio.stop()  # the next play() starts the sound here

    # ------------------------------------------------------------------ internals

    def _restart_at(self, t: float) -> None:
        """(Re)start the run at t: with sound if there is any, else on the timer."""
        self._pos = self._last = t
        self._last_audio = None
        if self._audio.has_samples and self._audio.start(t):
            self._await_audio()
        else:
            self._waiting_for_audio = False
            self._elapsed.start()

    def _await_audio(self) -> bool:
        self._waiting_for_audio = True
        self._last_audio = self._audio.position()
        self._audio_moves = 0
        self._wait.start()
        return True

    def _follow_audio(self) -> None:
        """Start the timer when the sound starts moving; then keep the two together.

        "Moving" means two increases of the audio position: the first one is often
        just the first period handed to a stream that is still starting up.
        """
        audio = self._audio.position() if self._audio.active else None
        if self._waiting_for_audio:
            if audio is None or self._wait.elapsed() > AUDIO_START_TIMEOUT * 1000:
                # Sound is slow to start: run on the timer. Should it start later, the
                # picture holds until the sound catches up (see below); better than silence.
                self._waiting_for_audio = False
                self._elapsed.start()
            elif self._last_audio is None or audio > self._last_audio:
                self._audio_moves += self._last_audio is not None
                self._last_audio = audio
                if self._audio_moves >= 2:
                    self._waiting_for_audio = False
                    self._pos = self._last = max(self._pos, audio)
                    self._elapsed.start()
            return
        if audio is None or audio == self._last_audio:
            return  # no fresh reading
        self._last_audio = audio
        error = audio - (self._pos + self._elapsed.nsecsElapsed() / 1e9 * self._speed)
        # A sound running behind (an underrun) holds the picture still until it
        # catches up: position() never goes back while playing.
        self._pos += error if abs(error) > RESYNC_SECONDS else SLEW * error

    def _tick(self) -> None:
        if not self._playing:
            return
        if self._audio.active:
            self._follow_audio()
        t = self.position()
        if self._range is not None and t >= self._range[1]:
            start, end, loop = self._range
            if loop:
                self._restart_at(start)
                self.ticked.emit(start)
            else:
                self._range = None
                self.pause()
                self.seek(end)
                self.ticked.emit(end)
            return
        if t >= self._duration:
            self._pos = self._duration
            self._playing = False
            self._waiting_for_audio = False
            self._timer.stop()
            self._audio.stop()
            self.ticked.emit(self._duration)
            self.playing_changed.emit(False)
            self.finished.emit()
            return
        self.ticked.emit(t)

    def _on_audio_failed(self, why: str) -> None:
        """The device went away mid-play: carry on silently on the timer."""
        position = self.position()
        self.audio_notice = why
        if self._playing:
            self._pos = self._last = position
            self._waiting_for_audio = False
            self._elapsed.start()
        self.notice.emit(why)
