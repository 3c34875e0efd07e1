"""A database and a Redis db for this test run alone.

Two runs on one machine (two worktrees, a developer's run beside CI's) used to share the database
``oncecode_test`` and Redis db 9, and each emptied the other's tables and queues mid-test. Now a run
creates ``oncecode_test_<pid>`` (dropped when it ends; one left by a killed run is dropped by the next
run, once its process is gone) and claims a free Redis db number with a key in db 0 that names its
process (released when it ends, expiring on its own after a crash).
"""

from __future__ import annotations

import os
import re
import socket

from redis import Redis
from sqlalchemy import create_engine, make_url, text

SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER_URL = os.environ.get("TEST_REDIS_SERVER_URL", "redis://127.0.0.1:6379")
DATABASE_PREFIX = "oncecode_test_"
CLAIM_KEY = "oncecode:test-run:redis-db:{n}"
CLAIM_SECONDS = 3600  # far longer than a run; only a crashed run's claim ever expires
REDIS_DBS = range(15, 0, -1)  # db 0 holds the claims; a stock Redis has 16 dbs
_OWNER = f"{socket.gethostname()}:{os.getpid()}"
_claimed: int | None = None


def run_database_url() -> str:
    return make_url(SERVER_URL).set(database=f"{DATABASE_PREFIX}{os.getpid()}").render_as_string(hide_password=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create_database(url: str) -> None:
    """Create this run's database, replacing a stale one of the same name, after dropping dead runs' ones."""
    name = make_url(url).database
    drop_dead_databases()
    engine = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def drop_dead_databases() -> list[str]:
    """Drop the databases of runs whose process is gone (killed before they could drop their own)."""
    engine = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        names = connection.execute(
            text("SELECT datname FROM pg_database WHERE datname LIKE :prefix"), {"prefix": f"{DATABASE_PREFIX}%"}
        ).scalars().all()
        dead = dead_runs_databases(names)
        for name in dead:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
    return dead


def dead_runs_databases(names: list[str]) -> list[str]:
    """The names among ``names`` that belong to runs whose process is gone."""
    runs = ((name, re.fullmatch(rf"{DATABASE_PREFIX}(\d+)", name)) for name in names)
    return [name for name, pid in runs if pid and not _alive(int(pid.group(1)))]


def drop_database(url: str) -> None:
    engine = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


# Deletes a claim only while it still names the dead owner that was read (no race with a new owner).
_RELEASE_IF = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def run_redis_url() -> str:
    """Claim the first free Redis db (15 down to 1) for this run; a dead run's claim is taken over."""
    global _claimed
    claims = Redis.from_url(REDIS_SERVER_URL, db=0, socket_connect_timeout=2)
    for n in REDIS_DBS:
        key = CLAIM_KEY.format(n=n)
        if not claims.set(key, _OWNER, nx=True, ex=CLAIM_SECONDS):
            holder = (claims.get(key) or b"").decode()
            host, _, pid = holder.partition(":")
            if host != socket.gethostname() or not pid.isascii() or not pid.isdigit() or _alive(int(pid)):
                continue
            claims.eval(_RELEASE_IF, 1, key, holder)
            if not claims.set(key, _OWNER, nx=True, ex=CLAIM_SECONDS):
                continue
        _claimed = n
        claims.close()
        return f"{REDIS_SERVER_URL}/{n}"
    raise RuntimeError(f"every Redis db 1-15 on {REDIS_SERVER_URL} is claimed by a running test run")


def release_redis() -> None:
    if _claimed is None:
        return
    claims = Redis.from_url(REDIS_SERVER_URL, db=0, socket_connect_timeout=2)
    claims.eval(_RELEASE_IF, 1, CLAIM_KEY.format(n=_claimed), _OWNER)
    claims.close()
