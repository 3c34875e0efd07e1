"""What the benchmarks share: the loopback database and Redis they empty, servers they start and stop,
and the facts about the machine that go with every result."""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from redis import ConnectionPool, Redis
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from app.config import ROOT
from app.db import Database

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/oncecode_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/1"  # test runs claim 15 downwards (tests/isolation.py)
RESULTS_DIR = ROOT / "bench" / "results"
GUNICORN_CONF = ROOT / "app" / "gunicorn_conf.py"
READY_TIMEOUT = 30.0  # seconds for a server to answer its first request
STOP_TIMEOUT = 15.0  # seconds for a server to shut down after SIGTERM before it is killed


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_load_options(parser: argparse.ArgumentParser, connections: int) -> None:
    """The options of a benchmark that drives gunicorn servers with a closed-loop load (intake, referral)."""
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per target (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target (default 2)")
    parser.add_argument("--connections", type=int, default=connections,
                        help=f"concurrent client connections (default {connections})")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    parser.add_argument("--worker-class", choices=("gevent", "gthread", "sync"), default=None,
                        help="gunicorn worker class for both servers (default: the Procfile's, from "
                             "app/gunicorn_conf.py)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per worker, with --worker-class gthread (default 1)")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="the app's LOG_LEVEL (default WARNING: no per-request log line)")


def check_load_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not (0 < args.seconds <= 600 and 0 <= args.warmup <= 60):
        parser.error("--seconds must be in (0, 600] and --warmup in [0, 60]")
    if not (1 <= args.connections <= 256 and 1 <= args.workers <= 32 and 1 <= args.threads <= 64):
        parser.error("--connections must be in [1, 256], --workers in [1, 32] and --threads in [1, 64]")
    if args.threads > 1 and args.worker_class != "gthread":
        parser.error("--threads needs --worker-class gthread")


def add_service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help="PostgreSQL on loopback; the database name must contain 'bench' (it is emptied). "
                             f"Created and migrated when missing. Default {DEFAULT_DATABASE_URL}")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help="Redis on loopback; this database is flushed before and after. "
                             f"Default {DEFAULT_REDIS_URL}")


def check_service_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a database or Redis that is not a loopback PostgreSQL / Redis the benchmark may empty."""
    try:
        args.database = make_url(args.database_url)
    except Exception as exc:  # any parse failure is a usage error
        parser.error(f"--database-url: {exc}")
    if args.database.get_backend_name() != "postgresql":
        parser.error("--database-url must be a PostgreSQL URL (the benchmarks measure PostgreSQL)")
    if "bench" not in (args.database.database or ""):
        parser.error("--database-url must name a database containing 'bench': the benchmark empties it")
    redis_kwargs = Redis.from_url(args.redis_url).connection_pool.connection_kwargs
    if not redis_kwargs.get("db"):
        parser.error("--redis-url must name a db from 1 to 15: db 0 holds the test runs' claims (tests/isolation.py)")
    redis_host = redis_kwargs.get("host", "127.0.0.1")
    for name, host in (("--database-url", args.database.host or "127.0.0.1"), ("--redis-url", redis_host)):
        if not loopback(host):
            parser.error(f"{name} must point at a loopback address, not {host!r}")


# --- database -----------------------------------------------------------------------------------


def create_database(url: URL) -> None:
    """Create the benchmark database through the ``postgres`` maintenance database when it is missing."""
    with psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                         password=url.password, dbname="postgres", autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
            print(f"created database {url.database}")


def migrate(database_url: str) -> None:
    """Alembic to head, as tests/conftest.py does."""
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def empty_database(db: Database) -> None:
    """Every table emptied, ids restarted: the benchmark's database is its own."""
    from app.db import Base

    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.session_scope() as session:
        session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


# tests/isolation.py claims Redis dbs 15 down to 1 for test runs with these keys in db 0: a benchmark
# claims its db the same way, so that neither flushes the other's (a test run and a benchmark both
# defaulted to db 10 and emptied each other's queues and leases mid-run).
CLAIM_KEY = "oncecode:test-run:redis-db:{n}"
CLAIM_SECONDS = 3600


@contextmanager
def claimed_redis_db(redis: Redis) -> Iterator[None]:
    """Hold ``redis``'s db number for this process, as test runs do; refuse one a live process holds."""
    n = int(redis.connection_pool.connection_kwargs.get("db", 0) or 0)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    pool = redis.connection_pool
    claims = Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class,
                                                  **{**pool.connection_kwargs, "db": 0}))
    key = CLAIM_KEY.format(n=n)
    if not claims.set(key, owner, nx=True, ex=CLAIM_SECONDS):
        holder = (claims.get(key) or b"").decode()
        host, _, pid = holder.partition(":")
        alive = host != socket.gethostname() or not pid.isdigit() or _alive(int(pid))
        if alive or not claims.set(key, owner, xx=True, ex=CLAIM_SECONDS):
            claims.close()
            print(f"Error: Redis db {n} is in use by another run ({holder}); pass --redis-url with another db "
                  "number (test runs claim 15 downwards)", file=sys.stderr)
            raise SystemExit(2)
    try:
        yield
    finally:
        if (claims.get(key) or b"").decode() == owner:
            claims.delete(key)
        claims.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def services(args: argparse.Namespace) -> Iterator[tuple[Database, Redis, dict[str, object]]]:
    """The benchmark's database (created if missing, migrated, emptied) and Redis database (flushed),
    with the machine's facts read before the run; Redis flushed and the pool closed afterwards.

    Also makes SIGTERM clean up like Ctrl-C.
    """
    signal.signal(signal.SIGTERM, interrupt)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    create_database(args.database)
    migrate(args.database_url)
    db = Database(args.database_url)
    redis = Redis.from_url(args.redis_url, socket_connect_timeout=2, socket_timeout=10)
    try:
        with claimed_redis_db(redis), _flushed(redis):
            empty_database(db)
            machine = machine_info(db, redis)
            print(f"load average before the run: {machine['loadavg_before']} on {machine['nproc']} CPUs",
                  flush=True)
            yield db, redis, machine
    finally:
        db.dispose()


@contextmanager
def reused(args: argparse.Namespace) -> Iterator[tuple[Database, None, dict[str, object]]]:
    """The database an earlier run built, as it is (nothing created, migrated or emptied): ``--reuse``."""
    db = Database(args.database_url)
    try:
        yield db, None, {"reused": True}
    finally:
        db.dispose()


@contextmanager
def _flushed(redis: Redis) -> Iterator[None]:
    redis.flushdb()
    try:
        yield
    finally:
        redis.flushdb()


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Let a clean-up finish once started: a second Ctrl-C must not leave a process behind."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process on this machine, in its own session (so a Ctrl-C meant for us reaches it only
    through ``stop()``), with its output in ``log_path``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}\n"
                               f"{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU so far of the process, its live children and the children it has reaped
        (an rq worker forks a work horse per job; Linux /proc, NaN elsewhere)."""
        try:
            return _cpu_seconds(self.process.pid, reaped=True) + sum(
                _cpu_seconds(pid) for pid in _children(self.process.pid))
        except OSError:
            return math.nan

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL to the whole group if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the group we created for it
                self.process.wait(timeout=5)
        self._log.close()
        if self.log_path.stat().st_size == 0:  # keep a log only when it said something
            self.log_path.unlink()


class Server(Process):
    """One gunicorn master on 127.0.0.1 serving ``target``."""

    def __init__(self, name: str, target: str, args: argparse.Namespace, env: dict[str, str], log_path: Path,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        # The Procfile's settings (app/gunicorn_conf.py: worker class, timeouts, access log), on loopback,
        # with the benchmark's number of workers and, when it asks for one, another worker class.
        argv = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(args.workers)]
        if getattr(args, "worker_class", None):
            argv += ["--worker-class", args.worker_class, "--threads", str(args.threads)]
        super().__init__(name, [*argv, "--log-level", "warning", *_without_control_socket(), target], env, log_path)

    def wait_ready(self, path: str = "/healthz") -> None:
        """Until ``GET path`` answers (any status: the bare app has no such route), or fail."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            self.check_running()
            try:
                status, body = get(self.port, path)
            except OSError:
                time.sleep(0.1)
                continue
            if self.name == "app" and status != 200:
                raise RuntimeError(f"app {path} answered {status}: {body!r}; see {self.log_path}")
            return
        raise RuntimeError(f"{self.name} server did not answer within {READY_TIMEOUT:.0f} s; see {self.log_path}")


def configured_worker_class() -> str:
    """The worker class the Procfile's gunicorn runs (app/gunicorn_conf.py)."""
    from app import gunicorn_conf

    return gunicorn_conf.worker_class


def _without_control_socket() -> list[str]:
    """gunicorn 25.1+ opens one control socket per user (~/.gunicorn/gunicorn.ctl): two servers at once
    fight over it, and would take it from any other gunicorn this user runs. Neither server needs it."""
    import gunicorn.config

    known = {setting.name for setting in gunicorn.config.KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in known else []


def _children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def _cpu_seconds(pid: int, reaped: bool = False) -> float:
    # Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th,
    # cutime and cstime (children waited for) the 14th and 15th.
    fields = [int(f) for f in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15]]
    return (sum(fields) if reaped else fields[0] + fields[1]) / os.sysconf("SC_CLK_TCK")


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def machine_info(db: Database, redis: Redis) -> dict[str, object]:
    import gunicorn

    with db.engine.connect() as connection:
        postgres = connection.execute(text("SHOW server_version")).scalar()
    return {
        "nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(), "platform": platform.platform(),
        "gunicorn": gunicorn.__version__, "postgresql": postgres, "redis": redis.info("server").get("redis_version"),
        # Anything else running competes for the same cores: a high figure here makes the run noisy.
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }


def interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


