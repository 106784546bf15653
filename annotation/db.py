"""Opening a label store: any SQLAlchemy URL, SQLite (WAL) by default, schema by alembic."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def normalise_url(db: str) -> str:
    """Accept a SQLAlchemy URL or a plain file path (which means SQLite)."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the GUI read while a writer commits; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _at_head(engine: Engine, cfg: Config) -> bool:
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head


class DatabaseError(RuntimeError):
    """The database cannot be opened or used: says which one and why, without a traceback."""


def describe(url) -> str:
    """The URL without its password, for messages."""
    return url.render_as_string(hide_password=True)


def open_database(db: str, migrate: bool = True, create: bool = True) -> Engine:
    """Create an engine for `db` and bring its schema to the newest migration.

    `create=False` (read-only commands) refuses a SQLite file that does not exist yet,
    so a typo in --db is an error rather than a new empty database.
    """
    try:
        url = make_url(normalise_url(db))
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends
        raise DatabaseError(f"bad database URL {db!r}: {exc}") from None
    try:
        if url.get_backend_name() == "sqlite":
            path = url.database
            if path and path != ":memory:":
                if not create and not Path(path).exists():
                    raise DatabaseError(f"no database at {path} (check --db / ${{AVVP_STUDIO_DB}}, or import a dataset first)")
                if Path(path).is_dir():
                    raise DatabaseError(f"{path} is a directory, not a SQLite database file")
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 10})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        if migrate:
            _migrate(engine)
    except DatabaseError:
        raise
    except (SQLAlchemyError, OSError, ImportError) as exc:
        raise DatabaseError(f"cannot open database {describe(url)}: {_reason(exc)}") from None
    return engine


@contextmanager
def _repeatable(engine: Engine, sqlite_begin: str) -> Iterator[Connection]:
    """A connection in a transaction whose reads all see one committed state: PostgreSQL's
    REPEATABLE READ; on SQLite an explicit `sqlite_begin` (the driver opens no transaction
    for SELECTs), whose snapshot WAL mode keeps while writers go on."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(sqlite_begin)
        else:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection for reads that must see one moment, however many queries they take: an
    export or a training set read while annotators save edits must not mix a clip's tracks
    or reviews from before and after an edit. Reads only: closing it rolls back."""
    with _repeatable(engine, "BEGIN") as conn:
        yield conn


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for work that reads the database and then writes what it read decides
    (an import compares with what is stored): no other writer may slip in between. SQLite:
    BEGIN IMMEDIATE takes the write lock before the first read (other writers wait, readers
    go on). PostgreSQL: a row changed by another writer meanwhile fails the whole
    transaction (nothing written) instead of being half-applied. Commits at the end, rolls
    back on any exception."""
    with _repeatable(engine, "BEGIN IMMEDIATE") as conn:
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]


def _migrate(engine: Engine) -> None:
    cfg = alembic_config()
    if _at_head(engine, cfg):
        return
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError:
        # Two processes opening a new database at once: the other one migrated it.
        if not _at_head(engine, cfg):
            raise
