"""Long work off the GUI thread: a QThread running a plain function with progress and cancel.

The function receives a `progress(stage, done, total)` callback (the same one the
CLI prints); calling it after `cancel()` raises `Cancelled` inside the worker, so
a database import rolls its transaction back and leaves nothing half-done.
"""
from __future__ import annotations

import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QThread, Signal


class Cancelled(Exception):
    """Raised inside the work function when the user cancelled."""


class BackgroundTask(QThread):
    progressed = Signal(str, int, int, float)  # stage, done, total, eta seconds (-1: unknown)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, work: Callable[[Callable[[str, int, int], None]], Any], title: str, parent=None):
        super().__init__(parent)
        self.work = work
        self.title = title
        self._cancel = False
        self._stage_started: dict[str, float] = {}

    def cancel(self) -> None:
        self._cancel = True

    def _progress(self, stage: str, done: int, total: int) -> None:
        if self._cancel:
            raise Cancelled()
        now = time.monotonic()
        started = self._stage_started.setdefault(stage, now)
        eta = (now - started) / done * (total - done) if done and total and done < total else -1.0
        self.progressed.emit(stage, done, total, eta)

    def run(self) -> None:
        try:
            result = self.work(self._progress)
        except Cancelled:
            self.cancelled.emit()
        except Exception as exc:  # shown to the user, never a dead window
            detail = str(exc) or type(exc).__name__
            if not isinstance(exc, (ValueError, OSError, LookupError)):
                detail += "\n\n" + traceback.format_exc(limit=4)
            self.failed.emit(detail)
        else:
            if self._cancel:
                self.cancelled.emit()
            else:
                self.succeeded.emit(result)
