"""The end-to-end world: the app and devstore on loopback ports, talking HTTP as they do in production.

The app reaches devstore only through its configuration (``SHOPIFY_STORE_BASE_URL``), exactly as it
reaches Shopify. Jobs run either in this process (``tests.conftest.run_worker``) or in real worker
processes (``Workers``: ``python -m workers``, rq's forking worker with its scheduler), when a test
needs concurrency or a worker to kill.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

import devstore
from app import runtime
from app.codes import programs
from app.config import ROOT
from app.models import IssuedCode, Program, Shop
from app.runtime import Runtime
from devstore.state import DevstoreConfig
from tests.conftest import API_KEY, API_SECRET, TOKEN_KEY, run_worker

SHOP = "demo.myshopify.com"
OTHER_SHOP = "other.myshopify.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening() -> BaseWSGIServer:
    """A threaded WSGI server bound now to a port the system chose (``.port``); ``serve`` gives it its app.

    Apps must know their own URL when they are built, so the port comes first. Asking for a free port,
    closing it and binding it again later left a moment in which another process (a worker's outgoing
    connection) could take it, and werkzeug answers a taken port with ``sys.exit(1)``, which also broke
    the fixtures of every later test of that pytest worker."""
    return make_server("127.0.0.1", 0, _not_serving_yet, threaded=True)


def _not_serving_yet(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not serving yet"]


def serve(app: Flask, server: BaseWSGIServer) -> BaseWSGIServer:
    """Serve ``app`` on a server from ``listening``, in a thread."""
    server.app = app
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; that value, or an AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(interval)


@dataclass
class World:
    app: Flask
    store: Flask
    app_url: str
    store_url: str

    @property
    def rt(self) -> Runtime:
        return self.app.extensions["oncecode"]

    def control(self, method: str, path: str, shop: str = SHOP, **kwargs: Any) -> Any:
        response = requests.request(method, f"{self.store_url}/_devstore/stores/{shop}{path}", timeout=10, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def wait_delivered(self, topic: str, count: int = 1, timeout: float = 10.0, shop: str = SHOP) -> list[dict]:
        def delivered() -> list[dict]:
            done = [d for d in self.control("GET", "/deliveries", shop=shop)
                    if d["topic"] == topic and d["status"] == "delivered"]
            return done if len(done) >= count else []

        return wait_until(delivered, timeout, what=f"{count} {topic} deliveries to {shop}")

    def shop(self, domain: str = SHOP) -> Shop:
        with self.rt.db.session_scope() as session:
            return session.scalars(select(Shop).where(Shop.domain == domain)).one()

    def access_token(self, domain: str = SHOP) -> str:
        return self.rt.cipher.decrypt(self.shop(domain).access_token)  # type: ignore[arg-type]


@pytest.fixture
def world(app_factory: Callable[..., Flask]) -> Iterator[World]:
    store_server, app_server = listening(), listening()
    app_url, store_url = f"http://127.0.0.1:{app_server.port}", f"http://127.0.0.1:{store_server.port}"
    store = devstore.create_app(DevstoreConfig(api_key=API_KEY, api_secret=API_SECRET, auto_approve=True,
                                               retry_base_seconds=0, app_proxy_url=f"{app_url}/proxy",
                                               app_url=app_url))
    app = app_factory(app_url=app_url, shopify_store_base_url=f"{store_url}/stores/{{shop}}",
                      app_bridge_url=f"{store_url}/_devstore/app-bridge.js")
    servers = [serve(store, store_server), serve(app, app_server)]
    runtime.activate(app.extensions["oncecode"])  # the in-process worker must use this app's settings
    yield World(app=app, store=store, app_url=app_url, store_url=store_url)
    store.extensions["devstore_deliverer"].stop()
    for server in servers:
        server.shutdown()
        server.server_close()
    store.extensions["devstore"].engine.dispose()


def install(world: World, shop: str = SHOP) -> None:
    """The merchant's browser: app /auth → devstore's authorize (auto-approved) → app /auth/callback."""
    browser = requests.Session()
    started = browser.get(f"{world.app_url}/auth", params={"shop": shop}, allow_redirects=False, timeout=5)
    assert started.status_code == 302
    assert started.headers["Location"].startswith(f"{world.store_url}/stores/{shop}/admin/oauth/authorize?")
    installed = browser.get(started.headers["Location"], timeout=10)
    assert installed.status_code == 200 and "OnceCode is installed" in installed.text


def set_program(world: World, shop: str = SHOP, kind: str = "welcome", **changes: Any) -> Program:
    """Change a program the way the merchant does (``programs.update_program``); active by default."""
    changes.setdefault("active", True)
    with world.rt.db.session_scope() as session:
        shop_id = session.scalars(select(Shop.id).where(Shop.domain == shop)).one()
        program = session.scalars(select(Program).where(Program.shop_id == shop_id, Program.kind == kind)).one()
        return programs.update_program(session, shop_id, program.id, changes)


def installed_with_welcome(world: World, shop: str = SHOP, **changes: Any) -> Program:
    """A shop installed and set up (programs, subscriptions, definitions) with its welcome program on."""
    install(world, shop)
    run_worker(world.rt.redis)
    return set_program(world, shop, **changes)


@dataclass
class Workers:
    """Real ``python -m workers`` processes on the test database and Redis, for as long as a test needs them."""

    world: World
    count: int = 1
    log_dir: Path | None = None
    # Short, so that a killed worker's job is taken back within seconds (production: 15).
    lease_seconds: int = 5
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        settings = self.world.rt.settings
        return {**os.environ, "ONCECODE_ENV": "test", "SHOPIFY_API_KEY": settings.shopify_api_key,
                "SHOPIFY_API_SECRET": settings.shopify_api_secret, "APP_URL": settings.app_url,
                "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url or "",
                "TOKEN_ENCRYPTION_KEY": TOKEN_KEY, "SECRET_KEY": settings.secret_key,
                "SHOPIFY_STORE_BASE_URL": settings.shopify_store_base_url, "LOG_LEVEL": "INFO",
                "SHOP_JOB_CONCURRENCY": str(settings.shop_job_concurrency),
                "WORKER_LEASE_SECONDS": str(self.lease_seconds)}

    def start(self) -> Workers:
        env = self.environment()
        for n in range(self.count):
            name = f"worker-{uuid.uuid4().hex[:6]}-{n}.log"  # a pool started after a kill keeps its own log
            log = open(self.log_dir / name, "wb") if self.log_dir else subprocess.DEVNULL  # noqa: SIM115
            self.processes.append(subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "workers"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        return self

    def kill(self) -> None:
        """SIGKILL every worker at once, mid-job if they are in one: what the OOM killer or a lost host does."""
        for process in self.processes:
            os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes:
            process.wait(timeout=5)
        self.processes.clear()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.processes.clear()

    def __enter__(self) -> Workers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def signup(world: World, email: str | None = None, shop: str = SHOP) -> dict:
    """A customer signs up on the store; devstore delivers customers/create to the app."""
    before = len([d for d in world.control("GET", "/deliveries", shop=shop) if d["topic"] == "customers/create"])
    email = email or f"{uuid.uuid4().hex}@example.com"
    customer = world.control("POST", "/customers", shop=shop, json={"email": email})
    world.wait_delivered("customers/create", count=before + 1, shop=shop)
    return customer


def codes(world: World) -> list[IssuedCode]:
    with world.rt.db.session_scope() as session:
        return list(session.scalars(select(IssuedCode).order_by(IssuedCode.id)))


@pytest.fixture
def workers(world: World, tmp_path: Path) -> Iterator[Callable[[int], Workers]]:
    """Start pools of worker processes (``workers(4)``); all are stopped after the test."""
    started: list[Workers] = []

    def start(count: int) -> Workers:
        pool = Workers(world, count=count, log_dir=tmp_path).start()
        started.append(pool)
        return pool

    yield start
    for pool in started:
        pool.stop()
