"""The Procfile's web process, run for real: slow clients do not stall it, and its logs keep secrets out.

One gunicorn, started from the Procfile's own ``web:`` line (so from ``app/gunicorn_conf.py``) on a free
loopback port against the test database and Redis, serves every test in this module.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from redis import Redis
from sqlalchemy import select

from app.config import ROOT
from app.db import Database
from app.models import WebhookEvent
from app.shopify.tokens import TokenCipher
from tests.conftest import API_KEY, API_SECRET, TEST_REDIS_URL, TOKEN_KEY, _truncate
from tests.e2e.harness import free_port, wait_until
from tests.helpers import make_shop, webhook_headers

SHOP = "demo.myshopify.com"
PROMPT = 2.0  # seconds: what "answered promptly" means on a busy 2-core machine; a stall is a hang


def procfile_web_command() -> list[str]:
    """The Procfile's ``web:`` command, with ``gunicorn`` run from this interpreter."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            argv = shlex.split(line.removeprefix("web:"))
            assert argv[0] == "gunicorn"
            return [sys.executable, "-m", "gunicorn", *argv[1:]]
    raise AssertionError("the Procfile has no web: line")


def without_control_socket() -> str:
    # gunicorn 25.1+ opens one control socket per user; parallel test runs would fight over it.
    import gunicorn.config

    known = {setting.name for setting in gunicorn.config.KNOWN_SETTINGS}
    return " --no-control-socket" if "control_socket_disable" in known else ""


@dataclass
class Web:
    url: str
    port: int
    stdout: Path
    stderr: Path
    database_url: str

    def access_lines(self, needle: str) -> list[str]:
        return [line for line in self.stdout.read_text().splitlines() if needle in line]


@pytest.fixture(scope="module")
def web(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    port = free_port()
    logs = tmp_path_factory.mktemp("gunicorn")
    env = {**os.environ, "ONCECODE_ENV": "test", "SHOPIFY_API_KEY": API_KEY, "SHOPIFY_API_SECRET": API_SECRET,
           "APP_URL": "https://oncecode.test", "DATABASE_URL": migrated_database, "REDIS_URL": TEST_REDIS_URL,
           "TOKEN_ENCRYPTION_KEY": TOKEN_KEY, "SECRET_KEY": "test-secret-key-" + "x" * 32,
           "SHOPIFY_STORE_BASE_URL": "https://{shop}", "WEB_CONCURRENCY": "2", "PYTHONUNBUFFERED": "1",
           # Loopback instead of the Procfile's 0.0.0.0; every other setting is the Procfile's.
           "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}" + without_control_socket()}
    db = Database(migrated_database)
    with db.session_scope() as session:
        make_shop(session, TokenCipher((TOKEN_KEY,)), domain=SHOP)
    stdout, stderr = logs / "stdout.log", logs / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(procfile_web_command(), cwd=ROOT, env=env, stdout=out, stderr=err,  # noqa: S603
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, f"gunicorn exited: {stderr.read_text()}"
        try:
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(ready, timeout=60, interval=0.2, what="gunicorn to answer /healthz")
        yield Web(url=url, port=port, stdout=stdout, stderr=stderr, database_url=migrated_database)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        db.dispose()
        _truncate(migrated_database)
        Redis.from_url(TEST_REDIS_URL).flushdb()


def slow_client(port: int, first_bytes: bytes) -> socket.socket:
    """A connection that sends the start of a request and then nothing more."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    connection.sendall(first_bytes)
    return connection


HALF_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: oncecode.test\r\nUser-Agent: slow"
HALF_BODY = (b"POST /webhooks HTTP/1.1\r\nHost: oncecode.test\r\nContent-Type: application/json\r\n"
             b"Content-Length: 100000\r\n\r\n{\"id\": ")


def timed(call):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_slow_clients_do_not_stall_healthz_or_a_signed_webhook(web: Web):
    # Far more slow clients than the two workers: each would have frozen a sync worker for good.
    slow = [slow_client(web.port, HALF_HEADERS) for _ in range(8)]
    slow += [slow_client(web.port, HALF_BODY) for _ in range(4)]
    try:
        time.sleep(0.3)  # let the workers accept them
        for _ in range(3):
            health, seconds = timed(lambda: requests.get(f"{web.url}/healthz", timeout=10))
            assert health.status_code == 200 and seconds < PROMPT, (health.status_code, seconds)

        body = json.dumps({"id": 4242}).encode()
        headers = webhook_headers("customers/create", SHOP, body, event_id="slow-clients-1")
        delivered, seconds = timed(lambda: requests.post(f"{web.url}/webhooks", data=body, headers=headers,
                                                         timeout=10))
        assert delivered.status_code == 200 and seconds < PROMPT, (delivered.status_code, seconds)
        db = Database(web.database_url)
        try:
            with db.session_scope() as session:
                ids = session.scalars(select(WebhookEvent.event_id)).all()
        finally:
            db.dispose()
        assert "slow-clients-1" in ids
        # The slow clients are still connected: nothing was answered by closing them.
        for connection in slow:
            connection.setblocking(False)
            with pytest.raises(BlockingIOError):
                connection.recv(1)
    finally:
        for connection in slow:
            connection.close()


def test_access_log_has_paths_without_query_strings(web: Web):
    query = {"shop": SHOP, "code": "oauth-code-123", "hmac": "f00dfeed", "state": "nonce-456",
             "id_token": "eyJhbGciOiJIUzI1NiJ9.e30.sig", "timestamp": "1"}
    requests.get(f"{web.url}/auth/callback", params=query, timeout=10)
    requests.get(f"{web.url}/healthz", params={"code": "WELCOME-SECRET"}, timeout=10)

    lines = wait_until(lambda: web.access_lines("/auth/callback") and web.access_lines("GET /healthz "),
                       timeout=5, what="access log lines")
    text = web.stdout.read_text()
    assert re.search(r'"GET /auth/callback HTTP/1.1" 403 ', text)  # refused: no OAuth state in this browser
    for secret in ("oauth-code-123", "f00dfeed", "nonce-456", "eyJhbGciOiJIUzI1NiJ9", "WELCOME-SECRET", "code=",
                   "?"):
        assert secret not in text, (secret, lines)


def test_gunicorn_masks_tokens_in_its_access_and_error_lines(web: Web):
    requests.get(f"{web.url}/nowhere/shpat_0123456789abcdef", timeout=10)
    # A malformed request line: gunicorn itself logs it (with the line) to its error log.
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as connection:
        connection.sendall(b"GET /x?token=shprt_fedcba9876543210\r\n\r\n")
        connection.recv(1024)

    wait_until(lambda: web.access_lines("/nowhere/") and re.search("Invalid request", web.stderr.read_text()),
               timeout=5, what="gunicorn's lines")
    access, errors = web.stdout.read_text(), web.stderr.read_text()
    assert "/nowhere/shp*** " in access and "0123456789abcdef" not in access
    assert "shp***" in errors and "fedcba9876543210" not in errors
