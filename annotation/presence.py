"""Who has which clip open: heartbeat rows in the shared store, for "being edited by NAME".

Each window writes its own row (a random session id) every few seconds with the clip on
screen; a row not refreshed within `STALE_SECONDS` no longer counts (a crashed window
fades out by itself) and rows older than an hour are swept. Presence is advice, not a
lock: concurrent edits are still caught by the versions (`ConflictError`).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, delete, func, insert, select, update

from annotation.models import Presence
from annotation.store import as_utc, utcnow

STALE_SECONDS = 30.0
SWEEP_AFTER = timedelta(hours=1)


def _now(conn) -> datetime:
    """The database server's clock on PostgreSQL (every client stamps and compares with the same
    clock, whatever their own say); SQLite is a local file, its clock is this machine's."""
    if conn.dialect.name == "postgresql":
        return as_utc(conn.execute(select(func.now())).scalar_one())
    return utcnow()


def heartbeat(engine: Engine, session: str, annotator: str, clip_id: int | None) -> None:
    p = Presence.__table__
    with engine.begin() as conn:
        now = _now(conn)
        done = conn.execute(update(p).where(p.c.session == session)
                            .values(annotator=annotator, clip_id=clip_id, seen_at=now))
        if done.rowcount == 0:
            conn.execute(insert(p).values(session=session, annotator=annotator, clip_id=clip_id, seen_at=now))
        conn.execute(delete(p).where(p.c.seen_at < now - SWEEP_AFTER))


def others_on_clip(engine: Engine, clip_id: int, session: str, stale: float = STALE_SECONDS) -> list[str]:
    """Annotators (other windows than `session`) with `clip_id` open, seen within `stale` seconds."""
    p = Presence.__table__
    with engine.connect() as conn:
        since = _now(conn) - timedelta(seconds=stale)
        names = conn.execute(select(p.c.annotator).where(and_(
            p.c.clip_id == clip_id, p.c.session != session, p.c.seen_at >= since))).scalars()
        return sorted(set(names))


def leave(engine: Engine, session: str) -> None:
    p = Presence.__table__
    with engine.begin() as conn:
        conn.execute(delete(p).where(p.c.session == session))
