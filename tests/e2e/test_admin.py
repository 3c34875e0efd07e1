"""The embedded admin end to end over HTTP: devstore installs the app as Shopify's managed
installation does (no OAuth), frames the app's URL with Shopify's launch query, and the app verifies
the id_token, exchanges it for a token exactly once however many first opens race, and shows the
store's home; the set-up then runs like an OAuth install's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import select

from app.models import Shop
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, World


def launch_url(world: World, path: str = "/") -> str:
    return world.control("GET", "/app_launch", params={"path": path})["url"]


def open_admin(world: World, path: str = "/") -> requests.Response:
    return requests.get(launch_url(world, path), timeout=15)


def test_a_managed_installation_is_installed_by_its_first_open_once(world: World):
    world.control("POST", "/managed_install")
    with ThreadPoolExecutor(max_workers=6) as tabs:  # six tabs open the new app at the same moment
        pages = list(tabs.map(lambda _: open_admin(world), range(6)))
    assert [page.status_code for page in pages] == [200] * 6, [p.text[:200] for p in pages]
    assert all("<h1>Home</h1>" in page.text for page in pages)
    assert world.control("GET", "/token_exchanges")["count"] == 1
    with world.rt.db.session_scope() as session:
        shop = session.scalars(select(Shop).where(Shop.domain == SHOP)).one()
        assert shop.is_installed and shop.setup_completed_at is None
    run_worker(world.rt.redis)  # the post-install set-up, queued once: subscriptions, programs
    subscriptions = {s["topic"] for s in world.control("GET", "/webhook_subscriptions")}
    assert {"APP_UNINSTALLED", "CUSTOMERS_CREATE", "ORDERS_PAID"} <= subscriptions
    page = open_admin(world)
    assert page.status_code == 200 and "Turn on welcome codes" in page.text  # programs exist: the first run
    assert world.control("GET", "/token_exchanges")["count"] == 1  # a token we hold: never exchanged again


def test_an_admin_page_is_framed_by_the_stores_admin_and_nothing_else(world: World):
    world.control("POST", "/managed_install")
    page = open_admin(world)
    assert page.headers["Content-Security-Policy"] == (
        f"frame-ancestors {world.store_url} https://admin.shopify.com")
    assert f'<script src="{world.store_url}/_devstore/app-bridge.js"></script>' in page.text  # APP_BRIDGE_URL
