"""Cancellations and refunds end to end: an order cancelled or refunded on devstore is recorded by the
app once, whatever duplicates, replays and out-of-order deliveries do; shops set up before the app
handled those topics get subscribed by the sweep; customers' email fingerprints are set and erased."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import requests
from sqlalchemy import delete, select

from app.codes import order_changes
from app.codes.catch_up import CatchUp
from app.codes.fingerprints import email_fingerprint
from app.codes.reconciliation import moment
from app.lifecycle import customer_data
from app.models import Customer, OrderCancellation, OrderRefund, PaidOrder, Shop, WebhookEvent
from app.queues import SUBSCRIBED_TOPICS, topics_key
from devstore.models import WebhookSubscription
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, World, install, signup
from tests.e2e.test_reconciliation import drop_orders_paid, place_order
from tests.helpers import webhook_headers
from workers.maintenance import requeue_stranded_events

NEW_TOPICS = {"ORDERS_CANCELLED", "REFUNDS_CREATE"}


def installed(world: World) -> None:
    install(world)
    run_worker(world.rt.redis)


def deliveries(world: World, topic: str) -> list[dict]:
    return [d for d in world.control("GET", "/deliveries") if d["topic"] == topic]


def refund(world: World, order_id: int, amount: str) -> dict:
    return world.control("POST", f"/orders/{order_id}/refunds", json={"amount": amount})


def cancel(world: World, order_id: int, reason: str = "fraud") -> dict:
    return world.control("POST", f"/orders/{order_id}/cancel", json={"reason": reason})


def paid_order(world: World, order_id: int) -> PaidOrder | None:
    with world.rt.db.session_scope() as session:
        return session.scalars(select(PaidOrder).where(PaidOrder.shopify_order_id == order_id)).one_or_none()


def refunds(world: World) -> list[OrderRefund]:
    with world.rt.db.session_scope() as session:
        return list(session.scalars(select(OrderRefund).order_by(OrderRefund.id)))


def cancellations(world: World) -> list[OrderCancellation]:
    with world.rt.db.session_scope() as session:
        return list(session.scalars(select(OrderCancellation)))


def resend(world: World, delivery: dict, same_event: bool = True) -> int:
    """Send a delivery's body to the app again, signed as Shopify signs it: the same event (Shopify's
    retry) or a new event id (a replay of the same body)."""
    body = json.dumps(delivery["payload"]).encode()
    headers = webhook_headers(delivery["topic"], SHOP, body, delivery["event_id"] if same_event else str(uuid.uuid4()))
    return requests.post(f"{world.app_url}/webhooks", data=body, headers=headers, timeout=10).status_code


def test_refunds_and_a_cancellation_are_recorded_once_despite_duplicates_and_replays(world: World):
    installed(world)
    assert {s["topic"] for s in world.control("GET", "/webhook_subscriptions")} >= NEW_TOPICS  # at install
    order = place_order(world, [], amount="50.00")
    world.wait_delivered("orders/paid")
    run_worker(world.rt.redis)
    recorded = paid_order(world, order["id"])
    assert recorded is not None and (recorded.refunded_amount, recorded.cancelled_at) == (Decimal("0.00"), None)
    total = recorded.total_price

    refund(world, order["id"], "10.00")
    world.wait_delivered("refunds/create")
    run_worker(world.rt.redis)
    assert paid_order(world, order["id"]).refunded_amount == Decimal("10.00")

    # Every message twice from now on (same webhook and event ids), then the whole order cancelled:
    # the rest is refunded (refunds/create) and orders/cancelled lists both refunds again.
    world.control("PUT", "/faults", json={"duplicate": True})
    cancel(world, order["id"], "fraud")
    world.wait_delivered("orders/cancelled", count=2)
    world.wait_delivered("refunds/create", count=3)
    run_worker(world.rt.redis)

    after = paid_order(world, order["id"])
    assert after.cancel_reason == "fraud" and after.cancelled_at is not None
    assert after.refunded_amount == total  # 10.00 + the rest, each refund once
    assert [r.amount for r in refunds(world)] == [Decimal("10.00"), total - Decimal("10.00")]
    assert len(cancellations(world)) == 1

    # Replays with new event ids (a copy of a body signed by Shopify): accepted, recorded nothing new.
    for topic in ("refunds/create", "orders/cancelled"):
        assert resend(world, deliveries(world, topic)[0], same_event=False) == 200
    run_worker(world.rt.redis)
    assert paid_order(world, order["id"]).refunded_amount == total and len(refunds(world)) == 2
    with world.rt.db.session_scope() as session:
        events = session.scalars(select(WebhookEvent).where(WebhookEvent.topic.in_(
            ["refunds/create", "orders/cancelled"]))).all()
        assert {e.status for e in events} == {"processed"}
        assert len(events) == 2 + 2 + 1  # the duplicates shared their event ids: one event each
        shop_id = session.scalars(select(Shop.id)).one()
        assert order_changes.changes_of(session, shop_id, order["id"])["refunded_amount"] == str(total)


def test_a_refund_and_cancellation_before_orders_paid_are_not_lost(world: World):
    installed(world)
    drop_orders_paid(world)  # orders/paid comes late: recorded by the store, not sent yet
    order = place_order(world, [], amount="30.00")
    refund(world, order["id"], "5.00")
    cancel(world, order["id"], "customer")
    world.wait_delivered("orders/cancelled")
    run_worker(world.rt.redis)
    assert paid_order(world, order["id"]) is None  # not paid as far as the app knows
    assert [r.amount for r in refunds(world)] == [Decimal("5.00"), Decimal(order["total_price"]) - Decimal("5.00")]
    [cancellation] = cancellations(world)
    assert cancellation.cancel_reason == "customer"

    [late] = deliveries(world, "orders/paid")
    assert late["status"] == "dropped"
    assert resend(world, late) == 200  # now it arrives: the facts recorded before are on the order
    run_worker(world.rt.redis)
    recorded = paid_order(world, order["id"])
    assert recorded is not None and recorded.cancel_reason == "customer"
    assert recorded.cancelled_at == cancellation.cancelled_at
    assert recorded.refunded_amount == recorded.total_price == Decimal(order["total_price"])


def test_a_cancellation_whose_webhook_was_lost_is_recorded_by_catch_up_once_and_its_reason_comes_later(
        world: World):
    installed(world)
    order = place_order(world, [], amount="40.00")
    world.wait_delivered("orders/paid")
    run_worker(world.rt.redis)
    world.control("PUT", "/faults", json={"drop": ["orders/cancelled", "refunds/create"]})
    cancelled = cancel(world, order["id"], "customer")
    assert [d["status"] for d in deliveries(world, "orders/cancelled")] == ["dropped"]
    assert cancellations(world) == [] and paid_order(world, order["id"]).cancelled_at is None

    caught_up = world.app.test_cli_runner().invoke(args=["reconcile", "now", SHOP, "--here"])
    assert "1 cancellations missed by webhooks" in caught_up.output, caught_up.output
    [cancellation] = cancellations(world)
    recorded = paid_order(world, order["id"])
    assert recorded.cancelled_at == cancellation.cancelled_at == moment(cancelled["cancelled_at"], "cancelled_at")
    assert recorded.cancel_reason is None  # the Admin API's Order does not say why
    shop = world.shop()
    again = CatchUp(world.rt.db, world.rt.admin_client(shop.id, shop.domain), shop.id).page()
    assert again.orders == 1 and again.cancellations == 0  # read again (the walk's overlap): nothing new

    # Shopify's retry of the lost delivery arrives at last: the same cancellation, now with its reason.
    [lost] = deliveries(world, "orders/cancelled")
    assert resend(world, lost) == 200
    run_worker(world.rt.redis)
    [cancellation] = cancellations(world)
    assert cancellation.cancel_reason == paid_order(world, order["id"]).cancel_reason == "customer"


def test_a_shop_set_up_before_the_new_topics_is_subscribed_by_the_sweep(world: World):
    installed(world)
    # As a shop set up by the previous release: no subscriptions for the new topics, no topics recorded.
    with world.store.extensions["devstore"].session() as store_session:
        store_session.execute(delete(WebhookSubscription).where(WebhookSubscription.topic.in_(NEW_TOPICS)))
    with world.rt.db.session_scope() as session:
        session.scalars(select(Shop)).one().webhook_topics = None
    assert not NEW_TOPICS & {s["topic"] for s in world.control("GET", "/webhook_subscriptions")}

    assert requeue_stranded_events()["setups"] == 1
    run_worker(world.rt.redis)
    subscribed = [s["topic"] for s in world.control("GET", "/webhook_subscriptions")]
    assert sorted(subscribed) == sorted(t.upper().replace("/", "_") for t in SUBSCRIBED_TOPICS)  # none twice
    assert world.shop().webhook_topics == topics_key()
    assert requeue_stranded_events()["setups"] == 0  # done: the sweep leaves it alone

    order = place_order(world, [], amount="20.00")
    world.wait_delivered("orders/paid")
    refund(world, order["id"], "2.50")
    world.wait_delivered("refunds/create")
    run_worker(world.rt.redis)
    assert paid_order(world, order["id"]).refunded_amount == Decimal("2.50")


def test_email_fingerprints_are_set_from_signups_and_orders_and_erased_on_redact(world: World):
    installed(world)
    key = world.rt.settings.email_hash_key
    customer = signup(world, email="  Jane.Doe+shop@GoogleMail.com ")
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        row = session.scalars(select(Customer).where(Customer.shopify_customer_id == customer["id"])).one()
        assert row.email_hash == email_fingerprint(key, "janedoe@gmail.com") != None  # noqa: E711
        shop = session.scalars(select(Shop)).one()
        export = customer_data(session, shop, customer["id"])
        assert export["customer"]["email_fingerprint"] == "held (a keyed hash; no email is stored)"
        assert row.email_hash not in json.dumps(export)

    # A buyer the app never saw sign up (customers/create missed): the order's customer has one too.
    buyer = signup(world, email="Buyer@Example.com")
    world.control("PUT", "/faults", json={"drop": ["customers/create"]})
    other = world.control("POST", "/customers", json={"email": "Other.Person@example.com"})
    place_order(world, [], customer_id=other["id"])
    world.wait_delivered("orders/paid")
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        hashes = dict(session.execute(select(Customer.shopify_customer_id, Customer.email_hash)).all())
    assert hashes[other["id"]] == email_fingerprint(key, "other.person@example.com")
    assert hashes[buyer["id"]] == email_fingerprint(key, "buyer@example.com")

    body = json.dumps({"shop_id": 1, "shop_domain": SHOP, "customer": {"id": customer["id"]},
                       "orders_to_redact": []}).encode()
    answer = requests.post(f"{world.app_url}/webhooks", data=body, timeout=10,
                           headers=webhook_headers("customers/redact", SHOP, body))
    assert answer.status_code == 200
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        assert session.scalars(select(Customer.email_hash).where(
            Customer.shopify_customer_id == customer["id"])).all() == []
