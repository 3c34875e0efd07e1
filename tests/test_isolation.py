"""Two test runs on one machine never share a database or a Redis db (tests/isolation.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from redis import Redis
from sqlalchemy import create_engine, make_url, text

from app.config import ROOT
from tests import isolation
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL

pinned = pytest.mark.skipif("TEST_DATABASE_URL" in os.environ or "TEST_REDIS_URL" in os.environ,
                            reason="this run pins its database and Redis through the environment")


def _databases() -> set[str]:
    engine = create_engine(isolation.SERVER_URL)
    with engine.connect() as connection:
        names = set(connection.execute(text("SELECT datname FROM pg_database")).scalars())
    engine.dispose()
    return names


@pinned
def test_this_run_has_a_database_and_a_redis_db_of_its_own(migrated_database):
    assert make_url(TEST_DATABASE_URL).database == f"oncecode_test_{os.getpid()}"
    assert make_url(TEST_DATABASE_URL).database in _databases()
    db = int(TEST_REDIS_URL.rsplit("/", 1)[1])
    claims = Redis.from_url(isolation.REDIS_SERVER_URL, db=0)
    assert claims.get(isolation.CLAIM_KEY.format(n=db)).decode().endswith(f":{os.getpid()}")


@pinned
def test_a_second_run_claims_another_redis_db_and_gives_it_back():
    second_run = ("from tests import isolation; url = isolation.run_redis_url(); print(url); "
                  "isolation.release_redis()")
    out = subprocess.run([sys.executable, "-c", second_run], cwd=ROOT, capture_output=True, text=True,  # noqa: S603
                         timeout=30, check=True).stdout.strip()
    assert out.startswith(isolation.REDIS_SERVER_URL) and out != TEST_REDIS_URL
    claims = Redis.from_url(isolation.REDIS_SERVER_URL, db=0)
    assert claims.get(isolation.CLAIM_KEY.format(n=int(out.rsplit("/", 1)[1]))) is None


def test_a_dead_runs_claim_is_taken_over_and_a_live_ones_is_not(monkeypatch):
    claims = Redis.from_url(isolation.REDIS_SERVER_URL, db=0)
    free = next(n for n in isolation.REDIS_DBS if claims.get(isolation.CLAIM_KEY.format(n=n)) is None)
    dead, live = f"{isolation.socket.gethostname()}:999999999", f"{isolation.socket.gethostname()}:{os.getppid()}"
    monkeypatch.setattr(isolation, "REDIS_DBS", [free])
    monkeypatch.setattr(isolation, "_claimed", None)
    key = isolation.CLAIM_KEY.format(n=free)
    try:
        claims.set(key, live)
        with pytest.raises(RuntimeError, match="claimed by a running test run"):
            isolation.run_redis_url()
        claims.set(key, dead)
        assert isolation.run_redis_url() == f"{isolation.REDIS_SERVER_URL}/{free}"
        assert claims.get(key).decode() == isolation._OWNER
    finally:
        claims.delete(key)


def test_only_dead_runs_databases_are_dropped():
    # Dropping a database waits for a checkpoint (seconds on a busy machine), so the choice is tested
    # here and the DROP itself runs at the start and end of every run.
    names = [f"oncecode_test_{os.getpid()}", "oncecode_test_999999999", "oncecode_test_h1", "oncecode", "postgres"]
    assert isolation.dead_runs_databases(names) == ["oncecode_test_999999999"]
