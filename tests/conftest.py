from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_LLP = REPO.parent / "shared" / "llp"


@pytest.fixture(scope="session")
def llp_dir() -> Path:
    """The real LLP annotation files; tests that need them skip without ../shared."""
    if not (SHARED_LLP / "AVVP_train.csv").exists():
        pytest.skip(f"real LLP files not found at {SHARED_LLP} (../shared is absent)")
    return SHARED_LLP


@pytest.fixture(scope="session")
def real_clip(llp_dir: Path) -> Path:
    clip = llp_dir / "BjCEufrlXm4.mp4"
    if not clip.exists():
        pytest.skip(f"real clip not found at {clip}")
    return clip


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server on loopback, for the team-database tests."""
    from tests.pg_server import PostgresServer, find_pg_bin

    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install .[postgres])")
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql")
    server = PostgresServer(bin_dir)
    try:
        url = server.start()
    except Exception as exc:  # the reason is shown in the skip line
        server.stop()
        pytest.skip(f"could not start a local PostgreSQL server: {exc}")
    yield url
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_url(request, tmp_path):
    """The same tests against the embedded SQLite file and a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    url = request.getfixturevalue("postgres_url")
    from sqlalchemy import create_engine, text

    name = f"t{abs(hash(request.node.nodeid)) % 10**9}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"
