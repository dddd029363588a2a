"""kyklos's metadata DB: one SQLAlchemy engine per URL, migrated to the newest schema on open.

SQLite (the default, a file under ``.kyklos/``) and PostgreSQL (``postgresql+psycopg://...``,
``pip install 'kyklos[postgres]'``) are supported and tested. Write transactions on SQLite start
with ``BEGIN IMMEDIATE`` so that two writers serialise instead of failing halfway; on PostgreSQL
the compare-and-set updates of :mod:`kyklos.registry` do the same job.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from kyklos.errors import ConfigError, MissingExtraError, StoreError

__all__ = ["HEAD_REVISION", "Database", "open_db", "redact_url"]

HEAD_REVISION = "0003"
_MIGRATIONS = Path(__file__).parent / "migrations"
_lock = threading.Lock()
_open: dict[str, Database] = {}


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe for logs and errors)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


class Database:
    """An open, migrated metadata DB.

    Use :meth:`read` for reads and :meth:`write` for changes; each yields a connection inside one
    transaction that commits on success and rolls back on any exception.
    """

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self.dialect = engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._begin(write=False) as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._begin(write=True) as conn:
            yield conn

    @contextmanager
    def _begin(self, *, write: bool) -> Iterator[Connection]:
        engine = self.engine.execution_options(kyklos_write=write)
        try:
            with engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise StoreError(
                f"metadata DB {redact_url(self.url)} failed: {exc.orig or exc}"
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()


def open_db(url: str) -> Database:
    """Open (and create or migrate, when needed) the metadata DB at ``url``; cached per process."""
    with _lock:
        db = _open.get(url)
        if db is None:
            db = Database(url, _engine(url))
            _migrate(db)
            _open[url] = db
        return db


def close_all() -> None:
    """Dispose every engine opened by this process (tests, forks)."""
    with _lock:
        for db in _open.values():
            db.dispose()
        _open.clear()


def _engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 60}
    try:
        engine = create_engine(url, **kwargs)
    except NoSuchModuleError as exc:
        raise ConfigError(f"unsupported database URL {redact_url(url)!r}: {exc}") from exc
    except ModuleNotFoundError as exc:
        raise MissingExtraError(exc.name or "a database driver", "postgres") from exc
    except ArgumentError as exc:
        raise ConfigError(
            f"malformed database URL {redact_url(url)!r}; expected e.g. "
            "sqlite:///path/kyklos.db or postgresql+psycopg://user@host/db"
        ) from exc
    if engine.dialect.name == "sqlite":
        _sqlite_events(engine)
    return engine


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("kyklos_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            conn.rollback()
            return None
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        conn.rollback()
        return str(revision) if revision is not None else None


def _migrate(db: Database) -> None:
    try:
        if _current_revision(db) == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with db.engine.execution_options(kyklos_write=True).begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except OperationalError as exc:
        raise StoreError(
            f"cannot open the metadata DB {redact_url(db.url)}: {exc.orig or exc}. "
            "Hint: check the URL (store.db / KYKLOS_DB_URL) and that the server is running"
        ) from exc
    except SQLAlchemyError as exc:
        if _current_revision(db) == HEAD_REVISION:  # another process migrated it meanwhile
            return
        raise StoreError(f"migrating the metadata DB {redact_url(db.url)} failed: {exc}") from exc
