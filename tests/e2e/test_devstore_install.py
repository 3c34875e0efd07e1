"""End to end over real HTTP: the app installed on a devstore shop, webhooks flowing back.

Both servers listen on loopback ports; the app reaches devstore only through its configuration
(``SHOPIFY_STORE_BASE_URL``), exactly as it reaches Shopify in production.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from flask import Flask
from rq.job import Job
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

import devstore
from app import runtime
from app.models import Customer, Program, Shop, WebhookEvent
from app.queues import delete_job, enqueue_setup, setup_job_id
from devstore.models import WebhookSubscription as StoreSubscription
from devstore.state import DevstoreConfig
from tests.conftest import API_KEY, API_SECRET, run_worker

SHOP = "demo.myshopify.com"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(app: Flask, port: int) -> BaseWSGIServer:
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@dataclass
class World:
    app: Flask
    store: Flask
    app_url: str
    store_url: str

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{self.store_url}/_devstore/stores/{SHOP}{path}", timeout=5, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def wait_delivered(self, topic: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [d for d in self.control("GET", "/deliveries") if d["topic"] == topic and d["status"] == "delivered"]
            if len(done) >= count:
                return done
            time.sleep(0.05)
        raise AssertionError(f"{topic} not delivered: {self.control('GET', '/deliveries')}")


@pytest.fixture
def world(app_factory: Callable[..., Flask]) -> Iterator[World]:
    store_port, app_port = _free_port(), _free_port()
    store = devstore.create_app(DevstoreConfig(api_key=API_KEY, api_secret=API_SECRET, auto_approve=True,
                                               retry_base_seconds=0))
    app_url, store_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{store_port}"
    app = app_factory(app_url=app_url, shopify_store_base_url=f"{store_url}/stores/{{shop}}")
    servers = [_serve(store, store_port), _serve(app, app_port)]
    runtime.activate(app.extensions["oncecode"])  # the worker must use this app's settings
    yield World(app=app, store=store, app_url=app_url, store_url=store_url)
    store.extensions["devstore_deliverer"].stop()
    for server in servers:
        server.shutdown()
        server.server_close()
    store.extensions["devstore"].engine.dispose()


def install(world: World) -> None:
    """The merchant's browser: app /auth → devstore's authorize (auto-approved) → app /auth/callback."""
    browser = requests.Session()
    started = browser.get(f"{world.app_url}/auth", params={"shop": SHOP}, allow_redirects=False, timeout=5)
    assert started.status_code == 302
    assert started.headers["Location"].startswith(f"{world.store_url}/stores/{SHOP}/admin/oauth/authorize?")
    installed = browser.get(started.headers["Location"], timeout=10)
    assert installed.status_code == 200 and "OnceCode is installed" in installed.text


def test_install_subscribe_and_receive_webhooks_over_http(world: World):
    rt = world.app.extensions["oncecode"]
    db, redis = rt.db.sessions(), rt.redis
    install(world)

    shop = db.scalar(select(Shop).where(Shop.domain == SHOP))
    assert shop.is_installed and shop.access_token_expires_at is not None  # an expiring offline token
    assert world.control("GET", "")["installation"]["installed"] is True

    run_worker(redis)  # post-install work: subscriptions through devstore's Admin GraphQL, programs
    subscriptions = world.control("GET", "/webhook_subscriptions")
    assert sorted(s["topic"] for s in subscriptions) == ["APP_UNINSTALLED", "CUSTOMERS_CREATE"]
    assert {s["uri"] for s in subscriptions} == {f"{world.app_url}/webhooks"}
    db.expire_all()
    assert db.get(Shop, shop.id).setup_completed_at is not None
    assert len(db.scalars(select(Program).where(Program.shop_id == shop.id)).all()) == 3

    # A customer signs up on the store: devstore delivers customers/create, signed, to the app.
    customer = world.control("POST", "/customers", json={"email": "new@example.com", "first_name": "Ada"})
    [delivery] = world.wait_delivered("customers/create")
    assert delivery["last_status"] == 200
    event = db.scalar(select(WebhookEvent).where(WebhookEvent.topic == "customers/create"))
    assert event.event_id == delivery["event_id"] and event.status == "pending"
    run_worker(redis)
    db.expire_all()
    [known] = db.scalars(select(Customer).where(Customer.shop_id == shop.id)).all()
    assert known.shopify_customer_id == customer["id"]

    # The merchant uninstalls: app/uninstalled arrives and the app forgets the token.
    world.control("POST", "/uninstall")
    world.wait_delivered("app/uninstalled")
    run_worker(redis)
    db.expire_all()
    assert not db.get(Shop, shop.id).is_installed
    db.close()


def test_setup_run_twice_creates_nothing_more(world: World):
    rt = world.app.extensions["oncecode"]
    install(world)
    run_worker(rt.redis)
    first = world.control("GET", "/webhook_subscriptions")
    with rt.db.session_scope() as session:
        shop = session.scalars(select(Shop)).one()
        shop_id, installed_at = shop.id, shop.installed_at

    # A retried or re-queued setup job finds everything in place.
    delete_job(rt.redis, setup_job_id(shop_id, installed_at))
    assert enqueue_setup(rt.redis, shop_id, installed_at)
    run_worker(rt.redis)
    assert Job.fetch(setup_job_id(shop_id, installed_at), connection=rt.redis).return_value() == "set up"
    assert world.control("GET", "/webhook_subscriptions") == first
    with rt.db.session_scope() as session:
        assert len(session.scalars(select(Program).where(Program.shop_id == shop_id)).all()) == 3


def test_setup_points_an_existing_subscription_at_our_address(world: World):
    """A shop installed under an old APP_URL: its subscription is updated, not duplicated."""
    rt = world.app.extensions["oncecode"]
    with world.store.extensions["devstore"].session() as session:
        session.add(StoreSubscription(id=1, shop=SHOP, topic="APP_UNINSTALLED", uri="https://old.oncecode.test/webhooks"))
    install(world)
    run_worker(rt.redis)
    subscriptions = world.control("GET", "/webhook_subscriptions")
    assert sorted((s["topic"], s["uri"]) for s in subscriptions) == [
        ("APP_UNINSTALLED", f"{world.app_url}/webhooks"), ("CUSTOMERS_CREATE", f"{world.app_url}/webhooks")]
    assert "gid://shopify/WebhookSubscription/1" in {s["id"] for s in subscriptions}
