"""End to end over real HTTP: the app installed on a devstore shop, webhooks flowing back.

Both servers listen on loopback ports; the app reaches devstore only through its configuration
(``SHOPIFY_STORE_BASE_URL``), exactly as it reaches Shopify in production.
"""

from __future__ import annotations

import re

import requests
from rq.job import Job
from sqlalchemy import select

from app.models import Customer, Program, Shop, WebhookEvent
from app.queues import delete_job, enqueue_setup, setup_job_id
from devstore.models import WebhookSubscription as StoreSubscription
from tests.conftest import API_KEY, run_worker
from tests.e2e.harness import SHOP, World, install


def test_install_subscribe_and_receive_webhooks_over_http(world: World):
    rt = world.app.extensions["oncecode"]
    db, redis = rt.db.sessions(), rt.redis
    install(world)

    shop = db.scalar(select(Shop).where(Shop.domain == SHOP))
    assert shop.is_installed and shop.access_token_expires_at is not None  # an expiring offline token
    assert world.control("GET", "")["installation"]["installed"] is True

    run_worker(redis)  # post-install work: subscriptions through devstore's Admin GraphQL, programs
    subscriptions = world.control("GET", "/webhook_subscriptions")
    assert sorted(s["topic"] for s in subscriptions) == ["APP_UNINSTALLED", "CUSTOMERS_CREATE", "ORDERS_CANCELLED",
                                                               "ORDERS_PAID", "REFUNDS_CREATE"]
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
    assert sorted((s["topic"], s["uri"]) for s in subscriptions) == [(topic, f"{world.app_url}/webhooks") for topic in (
        "APP_UNINSTALLED", "CUSTOMERS_CREATE", "ORDERS_CANCELLED", "ORDERS_PAID", "REFUNDS_CREATE")]
    assert "gid://shopify/WebhookSubscription/1" in {s["id"] for s in subscriptions}


def test_the_installed_pages_button_opens_the_app_in_devstores_admin(world: World):
    browser = requests.Session()
    started = browser.get(f"{world.app_url}/auth", params={"shop": SHOP}, allow_redirects=False, timeout=5)
    installed = browser.get(started.headers["Location"], timeout=10)
    assert installed.status_code == 200 and "OnceCode is installed" in installed.text
    [link] = re.findall(r'<a class="button" href="([^"]+)">([^<]+)</a>', installed.text)
    assert link == (f"{world.store_url}/stores/{SHOP}/admin/apps/{API_KEY}", "Open OnceCode in your admin")
    admin = browser.get(link[0], timeout=5)
    assert admin.status_code == 200
    [frame] = re.findall(r'<iframe[^>]*src="([^"]+)"', admin.text)
    assert frame.replace("&amp;", "&").startswith(f"{world.app_url}/?") and "id_token=" in frame
