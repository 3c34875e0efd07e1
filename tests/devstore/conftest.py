"""devstore fixtures: an in-memory devstore app per test and a real HTTP receiver for its webhooks.

devstore keeps its own SQLite state (memory here), so these tests need neither PostgreSQL nor Redis.
Deliveries are run synchronously with ``deliver_due`` unless a test starts the background thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from devstore import create_app
from devstore.state import DevstoreConfig, State
from devstore.webhooks import Deliverer

DEVSTORE_KEY = "devstore-test-client-id"
DEVSTORE_SECRET = "devstore-test-secret-fedcba9876543210"
SHOP = "demo.myshopify.com"
OTHER_SHOP = "other.myshopify.com"


def devstore_config(**overrides: Any) -> DevstoreConfig:
    values: dict[str, Any] = {"api_key": DEVSTORE_KEY, "api_secret": DEVSTORE_SECRET, "deliver_webhooks": False,
                              "retry_base_seconds": 0}
    values.update(overrides)
    return DevstoreConfig(**values)


@pytest.fixture
def make_devstore() -> Iterator[Callable[..., Flask]]:
    """Build devstore apps with config overrides; their delivery threads and engines are cleaned up."""
    built: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = create_app(devstore_config(**overrides))
        app.config["TESTING"] = True
        built.append(app)
        return app

    yield build
    for app in built:
        app.extensions["devstore_deliverer"].stop()
        app.extensions["devstore"].engine.dispose()


@pytest.fixture
def devstore(make_devstore: Callable[..., Flask]) -> Flask:
    return make_devstore()


@pytest.fixture
def client(devstore: Flask):  # type: ignore[no-untyped-def]
    return devstore.test_client()


@pytest.fixture
def state(devstore: Flask) -> State:
    return devstore.extensions["devstore"]


@pytest.fixture
def deliverer(devstore: Flask) -> Deliverer:
    return devstore.extensions["devstore_deliverer"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server recording the webhooks it gets and answering ``status``."""

    base_url: str = ""
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/webhooks") -> str:
        return self.base_url + path

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        request = Request(environ)
        self.requests.append(Received(request.path, dict(request.headers), request.get_data()))
        self.arrived.set()
        return Response("ok", status=self.status)(environ, start_response)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    target = Receiver()
    server = make_server("127.0.0.1", 0, target, threaded=True)
    target.base_url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield target
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()
