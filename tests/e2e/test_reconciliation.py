"""Redemption reconciliation end to end: an order paid on devstore with one of our codes redeems it
once, whether ``orders/paid`` arrives, is dropped (catch-up reads the order instead), or both happen,
and whether or not catch-up crashes in the middle of a page."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from sqlalchemy import select

from app.codes import reconciliation
from app.codes.catch_up import CatchUp, search_query
from app.models import Customer, IssuedCode, PaidOrder, ReconcileCursor, RedemptionAnomaly, WebhookEvent
from app.queues import enqueue_catch_up
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, World, codes, installed_with_welcome, signup, wait_until
from tests.helpers import webhook_headers
from workers.reconcile import reconcile_orders

# --- helpers --------------------------------------------------------------------------------------


def welcome_codes(world: World, customers: int = 1) -> list[tuple[dict, IssuedCode]]:
    """The shop installed with its welcome program on, ``customers`` signups, each with its code attached."""
    installed_with_welcome(world)
    signed_up = [signup(world) for _ in range(customers)]
    run_worker(world.rt.redis)
    by_customer = {_shopify_customer_id(world, row): row for row in codes(world)}
    pairs = [(customer, by_customer[customer["id"]]) for customer in signed_up]
    assert [row.status for _, row in pairs] == ["attached"] * customers
    return pairs


def _shopify_customer_id(world: World, row: IssuedCode) -> int:
    with world.rt.db.session_scope() as session:
        return session.get_one(Customer, row.customer_id).shopify_customer_id


def place_order(world: World, codes: list[str], customer_id: int | None = None, amount: str = "40.00") -> dict:
    """An order placed and paid on devstore (fires orders/paid); the order as devstore reports it."""
    body: dict[str, Any] = {"amount": amount, "codes": codes}
    body.update({"customer_id": customer_id} if customer_id else {"email": "guest@example.com"})
    placed = requests.post(f"{world.store_url}/_devstore/stores/{SHOP}/orders", json=body, timeout=10)
    assert placed.status_code == 201, placed.text
    return placed.json()


def code(world: World, code_id: int) -> IssuedCode:
    with world.rt.db.session_scope() as session:
        return session.get_one(IssuedCode, code_id)


def paid_orders(world: World) -> list[PaidOrder]:
    with world.rt.db.session_scope() as session:
        return list(session.scalars(select(PaidOrder).order_by(PaidOrder.id)))


def cursor(world: World) -> ReconcileCursor:
    with world.rt.db.session_scope() as session:
        return session.scalars(select(ReconcileCursor)).one()


def order_webhook_events(world: World) -> list[WebhookEvent]:
    with world.rt.db.session_scope() as session:
        return list(session.scalars(select(WebhookEvent).where(WebhookEvent.topic == "orders/paid")))


def store_orders(world: World, page_size: int = 50, after: str | None = None,
                 since: datetime = datetime(2000, 1, 1, tzinfo=UTC)) -> dict:
    """The store's answer to the very query catch-up asks (``orders.graphql``), through the Admin API."""
    shop = world.shop()
    client = world.rt.admin_client(shop.id, shop.domain)
    return client.query("orders", {"first": page_size, "after": after, "query": search_query(since)})["orders"]


def store_order_node(world: World, order_id: int) -> dict:
    return next(node for node in store_orders(world)["nodes"] if int(node["legacyResourceId"]) == order_id)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_up_to(world: World, newest: dict) -> datetime:
    """Where a finished walk leaves the cursor: the newest ``updatedAt`` it read (Shopify gives it to the
    second), unless that is not after where the cursor started, the install (an order updated in the
    very second of the install)."""
    return max(world.shop().installed_at, moment(newest["updatedAt"]))


def drop_orders_paid(world: World) -> None:
    assert world.control("PUT", "/faults", json={"drop": ["orders/paid"]}) == {"drop": ["orders/paid"]}


def assert_dropped(world: World, count: int) -> list[dict]:
    """The store logged the orders/paid deliveries as dropped (it does so as the order is placed)."""
    dropped = [d for d in world.control("GET", "/deliveries") if d["topic"] == "orders/paid"]
    assert [d["status"] for d in dropped] == ["dropped"] * count
    return dropped


def assert_redeemed_by(world: World, row: IssuedCode, order: dict) -> None:
    """The code carries the order exactly as devstore reports it (its JSON and its GraphQL node)."""
    node = store_order_node(world, order["id"])
    [used] = order["discount_codes"]
    assert row.status == "redeemed"
    assert (row.order_id, row.order_name) == (order["id"], order["name"])
    assert row.order_total == Decimal(order["total_price"])
    assert row.order_subtotal == Decimal(order["subtotal_price"])
    assert row.discount_amount == Decimal(used["amount"]) == Decimal(order["total_discounts"])
    assert row.currency == order["currency"]
    assert row.redeemed_at == moment(node["processedAt"])


# --- the webhook ----------------------------------------------------------------------------------

def test_an_order_with_our_code_redeems_it_and_every_paid_order_is_recorded(world: World):
    [(customer, issued)] = welcome_codes(world)
    assert "ORDERS_PAID" in {s["topic"] for s in world.control("GET", "/webhook_subscriptions")}  # at install

    order = place_order(world, [issued.code.lower()], customer["id"])  # codes are case-insensitive
    assert order["name"] == "#1001" and order["discount_codes"][0]["code"] == issued.code.lower()
    assert (order["total_discounts"], order["subtotal_price"], order["total_price"]) == ("4.00", "36.00", "46.00")
    world.wait_delivered("orders/paid")
    run_worker(world.rt.redis)

    assert_redeemed_by(world, code(world, issued.id), order)
    [recorded] = paid_orders(world)
    assert (recorded.shopify_order_id, recorded.name, recorded.source) == (order["id"], "#1001", "webhook")
    assert (recorded.our_codes, recorded.other_codes) == (1, 0)
    assert (recorded.total_price, recorded.subtotal_price, recorded.total_discounts, recorded.currency) == (
        Decimal("46.00"), Decimal("36.00"), Decimal("4.00"), order["currency"])
    [event] = order_webhook_events(world)
    assert event.status == "processed"

    plain = place_order(world, [], amount="25.00")  # no code at all: still counted for the averages
    world.wait_delivered("orders/paid", count=2)
    run_worker(world.rt.redis)
    first, second = paid_orders(world)
    assert first.id == recorded.id
    assert (second.shopify_order_id, second.name, second.source) == (plain["id"], "#1002", "webhook")
    assert (second.our_codes, second.other_codes, second.total_price) == (0, 0, Decimal(plain["total_price"]))
    assert code(world, issued.id).order_id == order["id"]  # untouched by the second order


# --- catch-up -------------------------------------------------------------------------------------

def test_a_dropped_orders_paid_is_recovered_by_catch_up_once(world: World):
    [(customer, issued)] = welcome_codes(world)
    drop_orders_paid(world)
    order = place_order(world, [issued.code.lower()], customer["id"])
    assert_dropped(world, 1)
    run_worker(world.rt.redis)
    assert order_webhook_events(world) == []  # the app never heard of it
    assert code(world, issued.id).status == "attached" and paid_orders(world) == []

    shop_id = world.shop().id
    assert enqueue_catch_up(world.rt.redis, shop_id)
    run_worker(world.rt.redis)

    assert_redeemed_by(world, code(world, issued.id), order)
    [recorded] = paid_orders(world)
    assert (recorded.shopify_order_id, recorded.source, recorded.our_codes) == (order["id"], "catch_up", 1)
    after_first = cursor(world)
    assert after_first.walk_since is None and after_first.last_error is None
    assert (after_first.last_orders, after_first.last_recovered) == (1, 1)
    assert after_first.updated_since == read_up_to(world, store_order_node(world, order["id"]))

    before = code(world, issued.id)
    assert reconcile_orders(shop_id) == "1 pages, 1 orders read, 0 missed by webhooks, 0 codes redeemed"
    again = code(world, issued.id)
    assert [(o.id, o.source) for o in paid_orders(world)] == [(recorded.id, "catch_up")]
    assert (again.status, again.order_id, again.redeemed_at, again.updated_at) == (
        before.status, before.order_id, before.redeemed_at, before.updated_at)
    after_second = cursor(world)
    assert (after_second.last_orders, after_second.last_recovered) == (1, 0)
    assert after_second.updated_since == after_first.updated_since


def test_the_cli_catches_up_here_showing_each_page(world: World):
    [(customer, issued)] = welcome_codes(world)
    drop_orders_paid(world)
    place_order(world, [issued.code], customer["id"])
    place_order(world, [])
    result = world.app.test_cli_runner().invoke(args=["reconcile", "now", SHOP, "--here"])
    assert result.exit_code == 0, result.output
    assert "page 1: 2 orders read, 2 paid, 2 missed by webhooks, 1 codes redeemed" in result.output
    assert "done: 2 orders read in 1 pages; 2 had not reached us by webhook" in result.output
    assert code(world, issued.id).status == "redeemed"
    status = world.app.test_cli_runner().invoke(args=["reconcile", "status", SHOP])
    assert "last_recovered" in status.output and "2" in status.output


def test_a_crash_mid_page_redoes_that_page_only_and_records_each_order_once(world: World, monkeypatch):
    pairs = welcome_codes(world, customers=7)
    drop_orders_paid(world)
    orders = [place_order(world, [row.code.lower()], customer["id"]) for customer, row in pairs]
    assert_dropped(world, 7)
    shop = world.shop()
    walk = CatchUp(world.rt.db, world.rt.admin_client(shop.id, shop.domain), shop.id, page_size=3)

    real = reconciliation.reconcile
    calls = 0

    def crashing(*args: Any, **kwargs: Any) -> reconciliation.Reconciled:
        nonlocal calls
        calls += 1
        if calls == 5:  # the 2nd order of page 2
            raise RuntimeError("worker lost mid-page")
        return real(*args, **kwargs)

    monkeypatch.setattr(reconciliation, "reconcile", crashing)
    first = walk.page()
    assert (first.orders, first.reconciled, first.recovered, first.redeemed, first.finished) == (3, 3, 3, 3, False)
    with pytest.raises(RuntimeError, match="worker lost mid-page"):
        walk.page()
    assert calls == 5

    stopped = cursor(world)
    page_one = store_orders(world, page_size=3, since=stopped.walk_since)
    assert [int(n["legacyResourceId"]) for n in page_one["nodes"]] == [o["id"] for o in orders[:3]]
    assert stopped.walk_after == page_one["pageInfo"]["endCursor"]  # still after page 1
    assert (stopped.walk_pages, stopped.walk_orders, stopped.walk_recovered) == (1, 3, 3)
    assert [o.shopify_order_id for o in paid_orders(world)] == [o["id"] for o in orders[:3]]  # none of page 2
    assert [code(world, row.id).status for _, row in pairs] == ["redeemed"] * 3 + ["attached"] * 4

    monkeypatch.setattr(reconciliation, "reconcile", real)
    pages = []
    while not pages or not pages[-1].finished:
        assert len(pages) < 5, "catch-up does not finish"
        pages.append(walk.page())
    assert [(p.orders, p.recovered, p.redeemed) for p in pages] == [(3, 3, 3), (1, 1, 1)]

    recorded = paid_orders(world)
    assert sorted(o.shopify_order_id for o in recorded) == sorted(o["id"] for o in orders)  # each once
    assert {o.source for o in recorded} == {"catch_up"}
    for (_, row), order in zip(pairs, orders, strict=True):
        assert_redeemed_by(world, code(world, row.id), order)
    with world.rt.db.session_scope() as session:
        assert session.scalars(select(RedemptionAnomaly)).all() == []
    done = cursor(world)
    assert (done.walk_since, done.walk_after, done.walk_newest) == (None, None, None)
    assert (done.last_orders, done.last_recovered, done.last_error) == (7, 7, None)
    *_, newest = store_orders(world)["nodes"]  # sortKey UPDATED_AT: the last is the newest
    assert int(newest["legacyResourceId"]) == orders[-1]["id"]
    assert done.updated_since == read_up_to(world, newest)


def test_an_order_seen_by_the_webhook_and_by_catch_up_is_recorded_once(world: World):
    [(customer, issued)] = welcome_codes(world)
    order = place_order(world, [issued.code], customer["id"])
    world.wait_delivered("orders/paid")
    run_worker(world.rt.redis)
    by_webhook = code(world, issued.id)
    assert_redeemed_by(world, by_webhook, order)

    assert reconcile_orders(world.shop().id) == "1 pages, 1 orders read, 0 missed by webhooks, 0 codes redeemed"

    [recorded] = paid_orders(world)
    assert (recorded.shopify_order_id, recorded.source, recorded.our_codes) == (order["id"], "webhook", 1)
    after = code(world, issued.id)
    assert (after.status, after.order_id, after.redeemed_at, after.discount_amount, after.updated_at) == (
        "redeemed", order["id"], by_webhook.redeemed_at, by_webhook.discount_amount, by_webhook.updated_at)
    done = cursor(world)
    assert (done.walk_since, done.last_orders, done.last_recovered) == (None, 1, 0)
    with world.rt.db.session_scope() as session:
        assert session.scalars(select(RedemptionAnomaly)).all() == []


def test_duplicate_and_concurrent_deliveries_to_four_worker_processes_redeem_once(world: World, workers):
    pairs = welcome_codes(world, customers=3)
    world.control("PUT", "/faults", json={"duplicate": True})  # devstore delivers every orders/paid twice
    orders = [place_order(world, [row.code], customer["id"]) for customer, row in pairs]
    deliveries = world.wait_delivered("orders/paid", count=6)
    pool = workers(4)
    # Meanwhile each order arrives again and again under new event ids, from eight senders at once
    # (a second subscription, Shopify's retries, a replay): every copy is a job of its own.
    bodies = [d["payload"].encode() if isinstance(d["payload"], str) else json.dumps(d["payload"]).encode()
              for d in deliveries]

    def send(body: bytes) -> int:
        headers = webhook_headers("orders/paid", SHOP, body, event_id=str(uuid.uuid4()))
        return requests.post(f"{world.app_url}/webhooks", data=body, headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as senders:
        assert set(senders.map(send, bodies * 4)) == {200}
    wait_until(lambda: all(e.status == "processed" for e in order_webhook_events(world))
               and len(order_webhook_events(world)) == 3 + 24, timeout=30, what="every delivery handled")
    pool.stop()

    assert sorted(o.shopify_order_id for o in paid_orders(world)) == sorted(o["id"] for o in orders)
    for (_, row), order in zip(pairs, orders, strict=True):
        redeemed = code(world, row.id)
        assert (redeemed.status, redeemed.order_id) == ("redeemed", order["id"])
    with world.rt.db.session_scope() as session:
        assert session.scalars(select(RedemptionAnomaly)).all() == []


def test_a_page_of_fifty_orders_asks_for_403_points_and_learns_the_time_zone(world: World):
    # What the README promises an operator: 2 + 50 × (the order, its three money bags and their
    # shopMoney, its customer) + 1 for the shop, whose time zone the metrics' days follow.
    installed_with_welcome(world)
    place_order(world, [])
    shop = world.shop()
    assert shop.iana_timezone is None
    walk = CatchUp(world.rt.db, world.rt.admin_client(shop.id, shop.domain), shop.id)
    assert walk.page().finished
    assert walk.client.last_cost["requestedQueryCost"] == 403
    assert walk.client.last_cost["actualQueryCost"] == 2 + 8 + 1  # one order came back
    assert world.shop().iana_timezone == "Europe/Berlin"
