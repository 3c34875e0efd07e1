"""Shared fixtures: real PostgreSQL and Redis on loopback, migrated by Alembic, cleaned per test.

``.ci/services`` (run by ``make test``) starts both and creates the test database. Nothing here
mocks the database or the queue; ``responses`` is used only at the Admin API / OAuth HTTP boundary.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import jinja2
import jinja2.bccache
import pytest
import werkzeug.routing.rules
from alembic import command
from alembic.config import Config
from cryptography.fernet import Fernet
from flask import Flask
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.dialects import postgresql

from app import create_app, runtime
from app.config import DEFAULT_SCOPES, ROOT, Settings
from app.db import Base, Database
from app.queues import QUEUES
from tests import isolation
from workers.worker import Worker

# The end-to-end world (the app and devstore over HTTP) is a fixture for any test that needs a store.
pytest_plugins = ["tests.e2e.harness"]

# Each run gets a database and a Redis db of its own (see tests/isolation.py), so two runs on one
# machine (two worktrees, a developer beside CI) never empty each other's tables or queues.
# TEST_DATABASE_URL / TEST_REDIS_URL pin them instead.
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or isolation.run_database_url()
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or isolation.run_redis_url()
API_KEY = "test-client-id"
API_SECRET = "test-client-secret-0123456789abcdef"
TOKEN_KEY = Fernet.generate_key().decode()


def _reuse_url_builders() -> None:
    """Compile each URL rule's builder once per run, not once per app.

    Werkzeug turns every rule into two small Python functions (ast + ``compile``) when it is added to
    a map: about 20 ms of each ``create_app`` and 15 ms of each devstore app, built afresh by nearly
    every one of the suite's 2,400 tests. A builder depends only on the rule's text, its parsed parts
    and its defaults' names, and reaches the rule itself (its converters, its query encoding) through
    the ``self`` it is bound to, so the same function serves every app's copy of a rule. Rules whose
    defaults fill a part of the path bake a converted value in: those are compiled as before.
    """
    rule_class = werkzeug.routing.rules.Rule
    compile_builder = getattr(rule_class, "_compile_builder", None)
    if compile_builder is None:  # another Werkzeug: nothing to reuse
        return
    builders: dict[tuple[object, ...], Callable[..., tuple[str, str]]] = {}

    def reused(self: werkzeug.routing.rules.Rule, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        defaults = self.defaults or {}
        if any(dynamic and part in defaults for dynamic, part in self._trace):
            return compile_builder(self, append_unknown)
        key = (self.rule, tuple(self._trace), tuple(defaults), append_unknown)
        if key not in builders:
            builders[key] = compile_builder(self, append_unknown)
        return builders[key]

    rule_class._compile_builder = reused  # type: ignore[method-assign]


_reuse_url_builders()


class _CompiledTemplates(jinja2.BytecodeCache):
    """Every app of this run shares its templates' compiled code, in memory.

    Each Flask app has its own Jinja environment, and so parsed and compiled every template it rendered
    afresh: about 25 ms a template, a tenth of the CPU of the tests that render pages, since nearly
    every test builds its own app. Jinja's bytecode cache keys a template by its name and file and
    checks its source's hash, so an edited template is compiled again; the apps' environments are
    configured alike (Flask's defaults), which is what makes their code interchangeable.
    """

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


Flask.jinja_options = {**Flask.jinja_options, "bytecode_cache": _CompiledTemplates()}

# The garbage collector's youngest generation at 10,000 objects instead of 700. A test process keeps
# 150,000-400,000 objects alive (modules, schemas, SQLAlchemy's statement cache), and with Python's
# default every test's thousands of short-lived objects set off full collections over all of them:
# 14 in 470 tests, 3 s of their 33 s of CPU. Now: 2 full collections, ~2 s less collecting in all.
gc.set_threshold(10_000, 10, 10)


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "shopify_api_key": API_KEY,
        "shopify_api_secret": API_SECRET,
        "shopify_scopes": tuple(DEFAULT_SCOPES.split(",")),
        "shopify_api_version": "2026-10",
        "app_url": "https://oncecode.test",
        "database_url": TEST_DATABASE_URL,
        "redis_url": TEST_REDIS_URL,
        "token_encryption_keys": (TOKEN_KEY,),
        "secret_key": "test-secret-key-" + "x" * 32,
        "shopify_store_base_url": "https://{shop}",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def migrate(database_url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


@pytest.fixture(scope="session")
def migrated_database() -> Iterator[str]:
    """This run's PostgreSQL database, created empty and brought to head by Alembic; dropped at the end."""
    owned = "TEST_DATABASE_URL" not in os.environ
    if owned:
        isolation.create_database(TEST_DATABASE_URL)
    else:  # a pinned database is reused: empty it
        engine = create_engine(TEST_DATABASE_URL)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    migrate(TEST_DATABASE_URL)
    yield TEST_DATABASE_URL
    if owned:
        isolation.drop_database(TEST_DATABASE_URL)


@functools.cache
def _truncation_engine(database_url: str) -> Engine:
    """One engine (and pooled connection) for the clean-ups between tests, not a new connection each time."""
    return create_engine(database_url)


@functools.cache
def _truncation_sql() -> str:
    """Every table emptied (children first), then every sequence of the schema restarted: one script."""
    deletes = [str(table.delete().compile(dialect=postgresql.dialect()))
               for table in reversed(Base.metadata.sorted_tables)]
    restart = ("SELECT setval(c.oid::regclass, 1, false) FROM pg_class c "
               "WHERE c.relkind = 'S' AND c.relnamespace = current_schema()::regnamespace")
    # Deleting codes, orders and referrals makes the tallies' triggers record changes: none may outlive
    # the test (the next test's shop gets the same id).
    return ";\n".join([*deletes, "DELETE FROM code_tally_changes", restart])


def _truncate(database_url: str) -> None:
    """Empty every table and restart every id sequence: as ``TRUNCATE ... RESTART IDENTITY``, but with
    DELETE (children first), which on a test's handful of rows costs ~6 ms where TRUNCATE, writing new
    files for every table and index, costs ~65 ms — a minute of the suite's time. The statements go as
    one script, in one round trip (as separate statements: 37 round trips, ~6 ms more per test)."""
    with _truncation_engine(database_url).begin() as connection:
        connection.exec_driver_sql(_truncation_sql())


class _RunDatabase(Database):
    """This run's database as every test's app sees it: one engine, kept from test to test.

    An engine per test cost each test a new connection (a PostgreSQL backend started), the dialect's
    first-connect queries and, above all, a cold SQL compilation cache: every statement a test ran was
    compiled afresh, 10 % of the CPU of the database-heavy tests. Between tests every session is closed
    and its connection back in the pool, rolled back, so a test sees nothing of the one before (its
    rows are deleted by ``_truncate``). A test that leaves a connection checked out gets the pool
    replaced, as ``dispose`` always did, so it cannot starve the next test.
    """

    def dispose(self) -> None:
        if self.engine.pool.checkedout():  # type: ignore[attr-defined]
            self.engine.dispose()


@functools.cache
def _run_database(database_url: str) -> _RunDatabase:
    return _RunDatabase(database_url)


@pytest.fixture
def settings(migrated_database: str) -> Settings:
    return make_settings(database_url=migrated_database)


@pytest.fixture
def app_factory(migrated_database: str) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test database with settings overridden; all are cleaned up afterwards."""
    built: list[Flask] = []

    def build(**overrides: object) -> Flask:
        flask_app = create_app(make_settings(**{"database_url": migrated_database, **overrides}))
        flask_app.config["TESTING"] = True
        rt = flask_app.extensions["oncecode"]
        if rt.settings.database_url == migrated_database:  # the engine create_app built has not connected
            rt.db.dispose()
            rt.db = _run_database(migrated_database)
        with suppress(RedisError):  # some tests point at a Redis that is down on purpose
            rt.redis.flushdb()
        built.append(flask_app)
        return flask_app

    yield build
    for flask_app in built:
        rt = flask_app.extensions["oncecode"]
        with suppress(RedisError):
            rt.redis.flushdb()
        rt.db.dispose()
    _truncate(migrated_database)


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.fixture
def rt(app) -> runtime.Runtime:  # type: ignore[no-untyped-def]
    return app.extensions["oncecode"]


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def runner(app):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()


@pytest.fixture
def db(rt):  # type: ignore[no-untyped-def]
    session = rt.db.sessions()
    yield session
    session.close()


@pytest.fixture
def redis(rt) -> Redis:  # type: ignore[no-untyped-def]
    return rt.redis


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator:
    """The same app on an SQLite file (the embedded default), for code that differs by dialect."""
    url = f"sqlite:///{tmp_path / 'oncecode.db'}"
    migrate(url)
    flask_app = create_app(make_settings(database_url=url))
    rt = flask_app.extensions["oncecode"]
    rt.redis.flushdb()
    yield flask_app
    rt.redis.flushdb()
    rt.db.dispose()


def run_worker(redis: Redis) -> None:
    """Run every queued job with a real rq worker in this process, then return (burst mode)."""
    Worker(list(QUEUES), connection=redis).work(burst=True, with_scheduler=False)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: a run without xdist (-p no:xdist) has none
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (``make test``): one worker more than this machine has cores. About a third of the
    suite's time is spent waiting on other processes (the worker processes, the browser, devstore's
    jobs, leases running out): a spare worker runs other tests meanwhile. On two cores: 3 workers."""
    return len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) + 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Give this run's Redis db back (its database is dropped by ``migrated_database``)."""
    isolation.release_redis()
