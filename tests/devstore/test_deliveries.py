"""Webhook deliveries over real HTTP: Shopify's headers and HMAC, one event id per event, retries with
back-off, the delay / duplicate / drop faults, and the background thread."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from devstore import checkout, oauth
from devstore.models import Delivery, Installation, WebhookSubscription
from devstore.webhooks import rest_topic, topic_enum
from tests.devstore.conftest import DEVSTORE_KEY, DEVSTORE_SECRET, SHOP
from tests.devstore.factories import make_discount, subscribe
from tests.helpers import webhook_signature


def new_customer(state, email: str = "ada@example.com") -> int:  # type: ignore[no-untyped-def]
    with state.session() as session:
        return checkout.create_customer(session, SHOP, email=email, first_name="Ada", last_name="Lovelace").id


def deliveries(state) -> list[Delivery]:  # type: ignore[no-untyped-def]
    with state.session() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def set_faults(client, **faults):  # type: ignore[no-untyped-def]
    response = client.put(f"/_devstore/stores/{SHOP}/faults", json=faults)
    assert response.status_code == 200, response.json


@pytest.mark.parametrize(("rest", "enum"), [("customers/create", "CUSTOMERS_CREATE"), ("orders/paid", "ORDERS_PAID"),
                                            ("app/uninstalled", "APP_UNINSTALLED")])
def test_topic_names_map_both_ways(rest, enum):
    assert topic_enum(rest) == enum and rest_topic(enum) == rest and rest_topic(rest) == rest


def test_a_delivery_carries_shopifys_headers_and_an_hmac_over_the_raw_body(state, deliverer, receiver):
    subscribe(state, receiver.url())
    customer_id = new_customer(state)

    assert deliverer.deliver_due() == 1

    [request] = receiver.requests
    headers = request.headers
    assert request.path == "/webhooks"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Shopify-Topic"] == "customers/create"
    assert headers["X-Shopify-Shop-Domain"] == SHOP
    assert headers["X-Shopify-Api-Version"] == "2026-10"
    assert headers["X-Shopify-Hmac-Sha256"] == webhook_signature(request.body, DEVSTORE_SECRET)
    triggered = datetime.fromisoformat(headers["X-Shopify-Triggered-At"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - triggered).total_seconds()) < 10
    payload = json.loads(request.body)
    assert payload["id"] == customer_id and payload["email"] == "ada@example.com"
    [row] = deliveries(state)
    assert (row.status, row.attempts, row.last_status) == ("delivered", 1, 200)
    assert (headers["X-Shopify-Webhook-Id"], headers["X-Shopify-Event-Id"]) == (row.webhook_id, row.event_id)


def test_one_event_has_one_event_id_across_subscriptions(state, deliverer, receiver):
    subscribe(state, receiver.url("/a"))
    subscribe(state, receiver.url("/b"))
    subscribe(state, receiver.url("/orders"), topic="ORDERS_PAID")
    new_customer(state)

    assert deliverer.deliver_due() == 2

    paths = sorted(r.path for r in receiver.requests)
    assert paths == ["/a", "/b"]
    assert len({r.headers["X-Shopify-Event-Id"] for r in receiver.requests}) == 1
    assert len({r.headers["X-Shopify-Webhook-Id"] for r in receiver.requests}) == 2
    assert receiver.requests[0].body == receiver.requests[1].body


def test_orders_paid_carries_the_codes_and_totals(state, deliverer, receiver):
    subscribe(state, receiver.url(), topic="ORDERS_PAID")
    make_discount(state, "WELCOME-XYZ", value="0.2")
    customer_id = new_customer(state)
    with state.session() as session:
        checkout.place_order(session, SHOP, customer_id=customer_id, codes=["welcome-xyz"],
                             line_items=[{"title": "Lamp", "price": "50.00", "quantity": 1}], shipping_price="5.00")

    deliverer.deliver_due()

    [request] = receiver.requests
    assert request.headers["X-Shopify-Topic"] == "orders/paid"
    payload = json.loads(request.body)
    assert payload["discount_codes"] == [{"code": "welcome-xyz", "amount": "10.00", "type": "percentage"}]
    assert (payload["total_line_items_price"], payload["subtotal_price"], payload["total_discounts"],
            payload["total_price"]) == ("50.00", "40.00", "10.00", "45.00")
    assert payload["customer"]["id"] == customer_id and payload["name"] == "#1001"
    assert payload["financial_status"] == "paid"


def test_a_failed_delivery_is_retried_with_back_off_until_it_succeeds(make_devstore, receiver):
    app = make_devstore(retry_base_seconds=5)
    state, deliverer = app.extensions["devstore"], app.extensions["devstore_deliverer"]
    subscribe(state, receiver.url())
    new_customer(state)
    start = datetime.now(UTC)
    receiver.status = 500

    assert deliverer.deliver_due(start) == 1
    [row] = deliveries(state)
    assert (row.status, row.attempts, row.last_status, row.last_error) == ("pending", 1, 500, "HTTP 500")
    assert deliverer.deliver_due(start + timedelta(seconds=4)) == 0  # first back-off: 5 s
    assert deliverer.deliver_due(start + timedelta(seconds=5)) == 1
    assert deliveries(state)[0].next_attempt_at == start + timedelta(seconds=15)  # then 10 s

    receiver.status = 200
    assert deliverer.deliver_due(start + timedelta(seconds=15)) == 1

    [row] = deliveries(state)
    assert (row.status, row.attempts, row.last_status, row.last_error) == ("delivered", 3, 200, None)
    assert len({r.headers["X-Shopify-Webhook-Id"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1


def test_delivery_gives_up_after_the_last_retry(make_devstore, receiver):
    app = make_devstore(max_delivery_retries=2)
    state, deliverer = app.extensions["devstore"], app.extensions["devstore_deliverer"]
    subscribe(state, receiver.url())
    new_customer(state)
    receiver.status = 503

    for _ in range(4):
        deliverer.deliver_due()

    [row] = deliveries(state)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 3, None)
    assert len(receiver.requests) == 3


def test_an_unreachable_address_is_a_failed_attempt(state, deliverer):
    subscribe(state, "http://127.0.0.1:9/webhooks")  # the discard port: nothing listens
    new_customer(state)

    deliverer.deliver_due()

    [row] = deliveries(state)
    assert row.status == "pending" and row.attempts == 1 and row.last_status is None
    assert "ConnectionError" in row.last_error


def test_duplicate_fault_delivers_every_message_twice_with_the_same_ids(client, state, deliverer, receiver):
    subscribe(state, receiver.url())
    set_faults(client, duplicate=True)
    new_customer(state)

    assert deliverer.deliver_due() == 2

    first, second = receiver.requests
    for name in ("X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Hmac-Sha256"):
        assert first.headers[name] == second.headers[name]
    assert first.body == second.body


def test_delay_fault_holds_the_first_attempt_back(client, state, deliverer, receiver):
    subscribe(state, receiver.url())
    set_faults(client, delay=30)
    new_customer(state)
    now = datetime.now(UTC)

    assert deliverer.deliver_due(now) == 0
    assert deliverer.deliver_due(now + timedelta(seconds=31)) == 1
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(("drop", "dropped"), [(True, True), (["customers/create"], True),
                                               (["CUSTOMERS_CREATE"], True), (["orders/paid"], False)])
def test_drop_fault_logs_the_delivery_but_never_sends_it(client, state, deliverer, receiver, drop, dropped):
    subscribe(state, receiver.url())
    set_faults(client, drop=drop)
    new_customer(state)

    deliverer.deliver_due(force=True)

    [row] = deliveries(state)
    assert (row.status == "dropped") is dropped
    assert len(receiver.requests) == (0 if dropped else 1)


def test_uninstall_delivers_app_uninstalled_and_removes_the_subscriptions(state, deliverer, receiver):
    subscribe(state, receiver.url(), topic="APP_UNINSTALLED")
    with state.session() as session:
        session.add(Installation(shop=SHOP, client_id=DEVSTORE_KEY, scopes="read_customers", installed=True,
                                 access_token="shpat_" + "1" * 32))
    with state.session() as session:
        oauth.uninstall(session, SHOP)

    deliverer.deliver_due()

    [request] = receiver.requests
    assert request.headers["X-Shopify-Topic"] == "app/uninstalled"
    payload = json.loads(request.body)
    assert payload["myshopify_domain"] == SHOP and payload["domain"] == SHOP
    with state.session() as session:
        assert session.scalars(select(WebhookSubscription)).all() == []


def test_the_background_thread_delivers_on_its_own(make_devstore, receiver):
    app = make_devstore(deliver_webhooks=True)
    state = app.extensions["devstore"]
    subscribe(state, receiver.url())

    new_customer(state)

    assert receiver.arrived.wait(5)
    app.extensions["devstore_deliverer"].stop()
    assert [d.status for d in deliveries(state)] == ["delivered"]


def test_no_subscription_no_delivery(state, deliverer):
    new_customer(state)

    assert deliverer.deliver_due(force=True) == 0
    assert deliveries(state) == []


def test_deliveries_of_another_store_are_left_alone(state, deliverer, receiver):
    subscribe(state, receiver.url(), shop="other.myshopify.com")
    with state.session() as session:
        checkout.create_customer(session, "other.myshopify.com", email="x@example.com")

    assert deliverer.deliver_due(shop=SHOP) == 0
    assert deliverer.deliver_due(shop="other.myshopify.com") == 1
