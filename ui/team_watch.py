"""Team use: every few seconds, off the GUI thread, say "I have this clip open" and ask the store
what changed on it (versions), who else has it open, and who saved last.

One query round per tick (a heartbeat upsert and three indexed reads), never two at once; a
store that refuses the heartbeat (read-only, an older schema) still gets its changes polled.
PostgreSQL LISTEN/NOTIFY would push instead of poll, but needs a connection held open per
window and SQLite has no equivalent; a 3 s poll serves both the same way.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from sqlalchemy.exc import SQLAlchemyError

from annotation.presence import heartbeat, leave, others_on_clip
from annotation.store import EditRecord, LabelStore

POLL_MS = 3000
STOP_WAIT_MS = 300


@dataclass(frozen=True)
class Poll:
    clip_id: int
    versions: dict[str, int]
    others: list[str]  # other annotators with the clip open
    last_edit: EditRecord | None
    presence_ok: bool  # False: the store refused the heartbeat (presence unknown)
    stamp: int  # the window's own commit count when the round began (a round that raced one is stale)


class _Bridge(QObject):
    done = Signal(object)  # emitted from a worker thread, delivered in the GUI thread


class TeamWatch(QObject):
    polled = Signal(object)  # Poll

    def __init__(self, store: LabelStore, annotator: str, stamp: Callable[[], int], parent: QObject | None = None,
                 interval_ms: int = POLL_MS):
        super().__init__(parent)
        self.store, self.annotator, self.stamp = store, annotator, stamp
        self.session_id = uuid.uuid4().hex
        self.clip_id: int | None = None
        self._stopped = False  # a poll scheduled before stop() must not bring the presence row back
        self._bridge = _Bridge(self)
        self._bridge.done.connect(self._deliver)
        self._task: threading.Thread | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.poll)

    def start(self) -> None:
        self.timer.start()

    def watch(self, clip_id: int | None) -> None:
        self.clip_id = clip_id

    def poll(self) -> threading.Thread | None:
        """Start one query round for the clip on screen (none while the previous one runs); with no clip
        on screen only the heartbeat goes out, so others stop seeing this window on its last clip."""
        if self._task is not None or self._stopped:
            return None
        store, session, annotator, clip_id, stamp = (self.store, self.session_id, self.annotator, self.clip_id,
                                                     self.stamp())

        def work() -> None:
            poll = None
            try:
                try:
                    heartbeat(store.engine, session, annotator, clip_id)
                    others, ok = (others_on_clip(store.engine, clip_id, session) if clip_id is not None else []), True
                except SQLAlchemyError:
                    others, ok = [], False
                if clip_id is not None:
                    poll = Poll(clip_id, store.versions(clip_id), others, store.last_edit(clip_id), ok, stamp)
            except Exception:  # the store went away: no news this round, the next one tries again
                poll = None
            try:
                self._bridge.done.emit(poll)  # queued to the GUI thread
            except RuntimeError:  # the window is gone
                pass

        # a daemon thread, not a QThread: a round still waiting on a slow server when the window (or
        # the program) goes is simply left behind, never a thread object destroyed while it runs
        self._task = threading.Thread(target=work, name="team-poll", daemon=True)
        self._task.start()
        return self._task

    def _deliver(self, poll: Poll | None) -> None:
        self._task = None
        if poll is not None and not self._stopped:  # a round finished after stop() (another database) is dropped
            self.polled.emit(poll)

    def stop(self) -> None:
        """No more polls, and this window's presence row goes, without holding the window: a round
        still running (a slow or unreachable server) finishes on its own, and the row is removed
        from a short-lived thread (a row left behind fades after STALE_SECONDS anyway)."""
        self._stopped = True
        self.timer.stop()
        task, self._task = self._task, None
        if task is not None:
            task.join(STOP_WAIT_MS / 1000)
        engine, session = self.store.engine, self.session_id
        leaving = threading.Thread(target=_leave_quietly, args=(engine, session), daemon=True)
        leaving.start()
        leaving.join(STOP_WAIT_MS / 1000)


def _leave_quietly(engine, session: str) -> None:
    try:
        leave(engine, session)
    except SQLAlchemyError:
        pass
