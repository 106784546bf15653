"""Where things live: the default database and data folders (per-user, platform conventions)."""
from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir

APP_NAME = "avvp-studio"
DB_ENV = "AVVP_STUDIO_DB"


def data_dir() -> Path:
    return Path(os.environ.get("AVVP_STUDIO_HOME") or user_data_dir(APP_NAME))


def default_database_url() -> str:
    return f"sqlite:///{data_dir() / 'studio.sqlite'}"


def resolve_database(db: str | None) -> str:
    """--db wins, then $AVVP_STUDIO_DB, then the per-user SQLite file."""
    return db or os.environ.get(DB_ENV) or default_database_url()


def default_demo_dir() -> Path:
    return data_dir() / "demo"
