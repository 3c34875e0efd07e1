"""Database plumbing: the declarative base, engines, a session per request and ``session_scope()``.

PostgreSQL (psycopg 3) in production, an SQLite file as the embedded default. Alembic owns the
schema; nothing here creates tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp on every backend: SQLite keeps no zone, so we store and read UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Database:
    """An engine and its session factory. One per process; sessions are cheap, engines are not."""

    def __init__(self, url: str, **engine_options: object) -> None:
        self.engine = make_engine(url, **engine_options)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session for jobs and the CLI: committed on success, rolled back on error, always closed."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str, **options: object) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 15}, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # WAL lets the web process read while a worker writes; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()
            dbapi_connection.create_function("oncecode_local_date", 2, sqlite_local_date, deterministic=True)

        return engine
    options.setdefault("pool_pre_ping", True)
    options.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, **options)


def sqlite_local_date(stored: str | None, zone: str) -> str | None:
    """SQL ``oncecode_local_date(timestamp, zone)`` on SQLite, which has no time zones: the calendar
    date, in ``zone``, of a timestamp stored as UTC text (PostgreSQL does this with ``timezone()``)."""
    if stored is None:
        return None
    moment = datetime.fromisoformat(stored)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(ZoneInfo(zone)).date().isoformat()


@cache
def _insert_statement(dialect: str, model: type, index_elements: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """Built once per (dialect, table): building SQL expressions costs more than running them."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    key = inspect(model).primary_key[0]
    return insert(model).on_conflict_do_nothing(index_elements=list(index_elements)).returning(key)


def insert_ignoring_conflict(session: Session | Connection, model: type, index_elements: list[str],
                             **values: object) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when a row was inserted. The schema decides duplicates."""
    bind = session.get_bind() if isinstance(session, Session) else session
    statement = _insert_statement(bind.dialect.name, model, tuple(index_elements))
    return session.execute(statement, values).first() is not None


AFTER_COMMIT = "oncecode_after_commit"


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Remember ``action`` (say, an enqueue) for ``run_after_commit``, once the work it depends on is committed.

    Whoever commits the session runs them (``workers.events.run_event`` does); work rolled back
    drops them with ``discard_after_commit``, so a job is never queued for rows that do not exist.
    """
    session.info.setdefault(AFTER_COMMIT, []).append(action)


def run_after_commit(session: Session) -> None:
    for action in session.info.pop(AFTER_COMMIT, []):
        action()


def discard_after_commit(session: Session) -> None:
    session.info.pop(AFTER_COMMIT, None)
