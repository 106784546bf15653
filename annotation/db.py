"""Opening a label store: any SQLAlchemy URL, SQLite (WAL) by default, schema by alembic."""
from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
OUR_TABLES = {"clips", "label_tracks", "reviews", "edits"}
CONNECT_TIMEOUT = 10  # seconds; a URL's own ?connect_timeout= wins
WRITER_LOCK = 0x41565650  # "AVVP": the PostgreSQL advisory lock key of imports and migrations


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


class DatabaseError(RuntimeError):
    """The database cannot be opened or used: says which one and why, without a traceback."""


def describe(url) -> str:
    """The URL without its password, for messages."""
    return url.render_as_string(hide_password=True)


def _sqlite_reader(path: str, probe: bool = False):
    """A DBAPI connection factory that can read and never writes the database: no journal-mode
    switch, no schema. A WAL database in a folder we cannot write (no -shm there) is only
    readable as `immutable`, which is safe when its -wal holds nothing uncheckpointed.
    `probe`: for the first look at a file that may not be ours; a WAL file without a -shm is
    then read as immutable, so not even SQLite's -wal/-shm side files appear beside it."""
    uri = "file:" + quote(path, safe="/")
    wal, shm = Path(path + "-wal"), Path(path + "-shm")

    def connect():
        # side files first: _wal_mode open()s the file, and closing any descriptor of it drops every
        # POSIX lock this process holds there; with no -shm no connection of ours holds one
        if probe and not shm.exists() and not wal.exists() and _wal_mode(path):
            return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if os.access(Path(path).parent, os.W_OK) or (wal.exists() and wal.stat().st_size > 0):
                raise DatabaseError(f"cannot read database {path}: {exc}") from None
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)

    return connect


def _wal_mode(path: str) -> bool:
    """The SQLite header's read/write format bytes (offsets 18, 19) are 2 in WAL mode. Only for a file
    no connection of this process has open: the close() drops that process's locks on it (POSIX), and
    another process closing its last connection would then delete the -wal and -shm under ours."""
    with open(path, "rb") as handle:
        header = handle.read(20)
    return len(header) == 20 and header[18] == 2


@functools.lru_cache(maxsize=1)
def _known_revisions() -> tuple[frozenset[str], str]:
    """(every revision of this program's migrations, the head); read once per process."""
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions()), script.get_current_head()


def _schema_revision(conn: Connection, where: str) -> str | None:
    """The alembic revision of our schema, None for an empty database; anything else is refused."""
    tables = set(inspect(conn).get_table_names())
    if not tables:
        return None
    if "alembic_version" not in tables or not OUR_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise DatabaseError(f"{where} is not an AVVP Studio database (it holds other tables: {shown}); "
                            "choose another database")
    revision = MigrationContext.configure(conn).get_current_revision()
    known, head = _known_revisions()
    if revision is None:
        raise DatabaseError(f"{where} holds AVVP Studio tables but no schema revision (alembic_version is empty); "
                            "it was not written by AVVP Studio as it is, so it is left alone")
    if revision not in known:
        raise DatabaseError(f"{where} has schema revision {revision!r}, which this version of AVVP Studio does not "
                            f"know (it knows up to {head!r}): it was written by a newer AVVP Studio; upgrade the "
                            "program or choose another database")
    return revision


def open_database(db: str, create: bool = True, readonly: bool = False) -> Engine:
    """An engine for `db` whose schema is ours and current.

    Writable (the default): brings the schema to the newest migration (safe when several
    processes open a new database at once) and sets SQLite's WAL mode; `create=False`
    refuses a SQLite file that does not exist yet. `readonly=True` (stats, export, training
    from the store) never creates, migrates or changes anything, works in a read-only
    folder, and refuses an empty database; it reads an older schema as it is (each migration
    only added tables: readers of a newer table check `has_table` and find nothing). Either way
    a database that is not ours, or whose schema is newer than this program, is refused before
    anything touches it.
    """
    try:
        url = make_url(normalise_url(db))
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends
        raise DatabaseError(f"bad database URL {db!r}: {exc}") from None
    where = url.database if url.get_backend_name() == "sqlite" and url.database else describe(url)
    try:
        if url.get_backend_name() == "sqlite":
            engine, probe = _sqlite_engine(url, create, readonly)
        else:
            engine = probe = _server_engine(url, readonly)
        with probe.connect() as conn:  # look before anything writes (WAL switch, migrations)
            revision = _schema_revision(conn, where)
        head = _known_revisions()[1]
        if readonly and revision is None:
            raise DatabaseError(f"{where} holds no AVVP Studio data (an empty database); import a dataset first")
        if not readonly:
            if url.get_backend_name() == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
                engine.dispose()  # connections made before the listener lack the pragmas
            if revision != head:
                _migrate(engine)
    except DatabaseError:
        raise
    except (SQLAlchemyError, OSError, ImportError) as exc:
        raise DatabaseError(f"cannot open database {where}: {_reason(exc)}") from None
    return engine


def _sqlite_engine(url, create: bool, readonly: bool) -> tuple[Engine, Engine]:
    """(the engine, the engine for the first look at the file)."""
    path = url.database
    if not path or path == ":memory:":
        if readonly:
            raise DatabaseError("an in-memory database holds nothing to read")
        engine = create_engine(url, connect_args={"timeout": 10})
        return engine, engine
    file = Path(path)
    if file.is_dir():
        raise DatabaseError(f"{path} is a directory, not a SQLite database file")
    if (readonly or not create) and not file.exists():
        raise DatabaseError(f"no database at {path} (check --db / ${{AVVP_STUDIO_DB}}, or import a dataset first)")
    if readonly:
        if file.stat().st_size == 0:
            raise DatabaseError(f"{path} is an empty file, not an AVVP Studio database; import a dataset into it first")
        return (create_engine("sqlite://", creator=_sqlite_reader(str(file)), poolclass=NullPool),
                create_engine("sqlite://", creator=_sqlite_reader(str(file), probe=True), poolclass=NullPool))
    file.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 10})
    probe = engine
    if file.exists() and file.stat().st_size > 0:  # an existing file may not be ours: look without touching
        probe = create_engine("sqlite://", creator=_sqlite_reader(str(file), probe=True), poolclass=NullPool)
    return engine, probe


def _server_engine(url, readonly: bool) -> Engine:
    """PostgreSQL (or another server): a connect timeout, so a server that never answers is an
    error after CONNECT_TIMEOUT seconds, not a hang; read-only sessions for read-only commands."""
    args: dict = {}
    if url.get_backend_name() == "postgresql":
        if "connect_timeout" not in url.query:
            args["connect_timeout"] = CONNECT_TIMEOUT
        if readonly:
            args["options"] = "-c default_transaction_read_only=on"
    return create_engine(url, pool_pre_ping=True, connect_args=args)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection for reads that must see one moment, however many queries they take: an
    export or a training set read while annotators save edits must not mix a clip's tracks
    or reviews from before and after an edit (PostgreSQL: REPEATABLE READ; SQLite: an explicit
    BEGIN, since the driver opens no transaction for SELECTs, whose snapshot WAL mode keeps
    while writers go on). Reads only: closing it rolls back."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")
        else:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


@contextmanager
def _pg_writer_lock(conn: Connection) -> Iterator[None]:
    """PostgreSQL: a session advisory lock held by one writer at a time, taken OUTSIDE any
    transaction, so the transaction that follows sees what the previous holder committed (a lock
    taken inside a REPEATABLE READ transaction would read the snapshot of before the wait)."""
    conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": WRITER_LOCK})
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": WRITER_LOCK})
        conn.commit()


@contextmanager
def write_transaction(engine: Engine, isolation: str = "REPEATABLE READ") -> Iterator[Connection]:
    """A transaction for work that reads the database and then writes what it read decides
    (an import compares with what is stored): no other such writer may slip in between. SQLite:
    BEGIN IMMEDIATE takes the write lock before the first read (other writers wait, readers go
    on). PostgreSQL: the writers' advisory lock, then a transaction of `isolation` (REPEATABLE
    READ: a row an annotator changed meanwhile fails the whole transaction, nothing written,
    instead of being half-applied). Commits at the end, rolls back on any exception."""
    with engine.connect() as conn:
        with ExitStack() as held:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                if engine.dialect.name == "postgresql":
                    held.enter_context(_pg_writer_lock(conn))
                conn = conn.execution_options(isolation_level=isolation)
                conn.begin()
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
    """Upgrade to head as a locked writer (`write_transaction`), so processes opening a new
    database at once migrate it one after the other and the later ones find it done; on
    PostgreSQL in READ COMMITTED, which is all DDL needs."""
    with write_transaction(engine, isolation="READ COMMITTED") as conn:
        if _schema_revision(conn, describe(engine.url)) != _known_revisions()[1]:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")


def has_table(engine: Engine, name: str) -> bool:
    """Whether the schema has `name` (a read-only open of an older schema lacks the newer tables)."""
    return inspect(engine).has_table(name)
