"""Training runs as rows of the store: who trained what on which data, its state and its numbers.

Written by `train --db URL [--name RUN]` (the window's training panel runs that command), read by
`avvp-studio runs` and the window's run picker and comparison. A run's name is also its
prediction source, `prediction:<name>`; a name belongs to one run folder, so two runs never
share one. A process killed hard leaves its run "running": `updated_at` (refreshed every epoch)
tells how stale that is.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from annotation.db import has_table
from annotation.models import Run
from annotation.store import as_utc, utcnow

RUN_STATUSES = ("running", "finished", "stopped", "failed")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RunNameError(ValueError):
    """The run name is malformed or belongs to another run folder."""


@dataclass(frozen=True)
class RunRecord:
    name: str
    model: str
    task: str
    status: str
    config: dict[str, Any]
    data_dir: str
    run_dir: str
    device: str | None
    started_by: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    best_epoch: int | None
    metrics: dict[str, Any] | None  # {"val": ten numbers, "test": ten numbers, "per_class": {...}}; AVS: mIoU, F
    checkpoint: str | None
    message: str | None

    @property
    def source(self) -> str:
        return f"prediction:{self.name}"

    def to_json(self) -> dict[str, Any]:
        """What `avvp-studio runs --json` prints for one run."""
        out = {k: getattr(self, k) for k in ("name", "model", "task", "status", "data_dir", "run_dir", "device",
                                              "started_by", "best_epoch", "checkpoint", "message", "config")}
        for k in ("started_at", "updated_at", "finished_at"):
            value = getattr(self, k)
            out[k] = value.isoformat(timespec="seconds") if value else None
        metrics = self.metrics or {}
        out["metrics"] = {"val": metrics.get("val"), "test": metrics.get("test")}
        out["per_class"] = metrics.get("per_class")
        return out


def headline(task: str, scores: dict | None) -> str:
    """The number a run is chosen by, with its name: 'Type@AV 61.23' (AVVP), 'mIoU 41.20' (AVS), or '—'."""
    if not scores:
        return "—"
    return f"mIoU {scores['miou']:.2f}" if task == "avs" else f"Type@AV {scores['segment']['type']:.2f}"


def check_run_name(name: str) -> str:
    if not RUN_NAME.match(name):
        raise RunNameError(f"run name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def _record(row) -> RunRecord:
    return RunRecord(row.name, row.model, row.task, row.status, json.loads(row.config), row.data_dir, row.run_dir,
                     row.device, row.started_by, as_utc(row.started_at), as_utc(row.updated_at),
                     as_utc(row.finished_at), row.best_epoch, json.loads(row.metrics) if row.metrics else None,
                     row.checkpoint, row.message)


def start_run(engine: Engine, name: str, model: str, task: str, config: dict[str, Any], data_dir: str,
              run_dir: str, device: str | None, started_by: str | None) -> RunRecord:
    """Record a run as running (a new one, or the same folder resumed); a name of another folder is refused."""
    check_run_name(name)
    r, now = Run.__table__, utcnow()
    values = dict(model=model, task=task, status="running", config=json.dumps(config), data_dir=data_dir,
                  device=device, updated_at=now, finished_at=None, message=None)
    with engine.begin() as conn:
        row = conn.execute(select(r).where(r.c.name == name)).first()
        if row is None:
            conn.execute(insert(r).values(name=name, run_dir=run_dir, started_by=started_by, started_at=now, **values))
        elif row.run_dir != run_dir:
            raise RunNameError(f"run name {name!r} belongs to the run in {row.run_dir}; choose another --name")
        else:
            conn.execute(update(r).where(r.c.name == name).values(**values))
    return get_run(engine, name)


def update_run(engine: Engine, name: str, **values: Any) -> None:
    """Set fields of a run (status, best_epoch, metrics (a dict), checkpoint, message, finished_at)."""
    if "status" in values and values["status"] not in RUN_STATUSES:
        raise ValueError(f"unknown run status {values['status']!r}; expected one of {RUN_STATUSES}")
    if "metrics" in values and values["metrics"] is not None:
        values["metrics"] = json.dumps(values["metrics"])
    r = Run.__table__
    with engine.begin() as conn:
        conn.execute(update(r).where(r.c.name == name).values(updated_at=utcnow(), **values))


def finish_run(engine: Engine, name: str, status: str, message: str | None = None, **values: Any) -> None:
    update_run(engine, name, status=status, finished_at=utcnow(), message=message, **values)


def get_run(engine: Engine, name: str) -> RunRecord:
    r = Run.__table__
    with engine.connect() as conn:
        row = conn.execute(select(r).where(r.c.name == name)).first()
    if row is None:
        raise LookupError(f"no run named {name!r} in this database")
    return _record(row)


def list_runs(engine: Engine) -> list[RunRecord]:
    """Newest first (none in a database older than the runs table, opened read-only)."""
    if not has_table(engine, Run.__tablename__):
        return []
    r = Run.__table__
    with engine.connect() as conn:
        return [_record(row) for row in conn.execute(select(r).order_by(r.c.started_at.desc(), r.c.name))]
