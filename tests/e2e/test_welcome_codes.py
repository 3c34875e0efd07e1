"""Welcome codes end to end: a signup on devstore becomes one single-use code on the store, attached
to its customer, whatever the webhooks, the workers and the store do on the way."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy import select, update

from app.codes import attachment
from app.codes.issuance import Issuer, ShopRef, reference_tag, reserve
from app.models import Customer, IssuedCode, Program, WebhookEvent
from app.queues import enqueue_issuance
from app.shopify import client
from devstore.models import Discount, MetafieldDefinition
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, World, codes, installed_with_welcome, set_program, signup
from tests.helpers import webhook_headers
from workers.maintenance import requeue_stranded_codes
from workers.worker import Worker


def store_discounts(world: World, shop: str = SHOP) -> list[dict]:
    return world.control("GET", "/discounts", shop=shop)


def store_customer(world: World, customer_id: int, shop: str = SHOP) -> dict:
    return next(c for c in world.control("GET", "/customers", shop=shop) if c["id"] == customer_id)


def order(world: World, code: str, customer_id: int | None = None, amount: str = "40.00",
          shop: str = SHOP) -> requests.Response:
    body: dict = {"amount": amount, "codes": [code]}
    body.update({"customer_id": customer_id} if customer_id else {"email": "guest@example.com"})
    return requests.post(f"{world.store_url}/_devstore/stores/{shop}/orders", json=body, timeout=10)


# --- the happy path ------------------------------------------------------------------------------

def test_a_signup_gets_one_locked_single_use_code_attached_to_the_customer(world: World):
    installed_with_welcome(world, value=15, expires_after_days=30, minimum_subtotal="20.00",
                           redirect_path="/collections/new")
    world.control("DELETE", "/graphql_usage")
    customer = signup(world)
    run_worker(world.rt.redis)

    [row] = codes(world)
    assert row.status == "attached" and row.attached_at is not None and row.last_error is None
    assert row.code.startswith("WELCOME-") and row.code == row.code.upper()
    assert row.idempotency_key == f"welcome:{world.shop().id}:{customer['id']}"
    assert row.expires_at - row.issued_at == timedelta(days=30)

    [discount] = store_discounts(world)
    assert discount["admin_graphql_api_id"] == row.discount_gid
    assert [c["code"] for c in discount["codes"]] == [row.code]
    assert discount["usage_limit"] == 1 and discount["applies_once_per_customer"] is True
    assert discount["customer_ids"] == [customer["id"]]  # locked to the customer (context.customers.add)
    assert discount["value_type"] == "percentage" and discount["value"] == "0.1500"  # a fraction, not 15
    assert discount["minimum_subtotal"] == "20.00"
    assert discount["ends_at"].startswith(row.expires_at.strftime("%Y-%m-%dT%H:%M:%S"))

    seen = store_customer(world, customer["id"])
    link = f"{world.store_url}/stores/{SHOP}/discount/{row.code}?redirect=%2Fcollections%2Fnew"
    assert {m["key"]: m["value"] for m in seen["metafields"]} == {
        "welcome_code": row.code, "welcome_code_expires_at": row.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "welcome_code_url": link}
    assert seen["tags"] == ["oncecode-welcome"]
    # One create, one metafieldsSet, one tagsAdd: 30 points, and no look-up on a first attempt.
    assert world.control("GET", "/graphql_usage") == {"requests": 3, "points": 30, "throttled": 0}


def test_the_code_works_once_for_its_customer_and_never_for_another(world: World):
    installed_with_welcome(world)
    owner, stranger = signup(world), signup(world)
    run_worker(world.rt.redis)
    code = next(c for c in codes(world) if c.customer_id is not None and _shopify_id(world, c) == owner["id"])

    refused = order(world, code.code, stranger["id"])
    assert refused.status_code == 409 and refused.json()["rule"] == "customer_restricted"
    assert order(world, code.code).json()["rule"] == "customer_restricted"  # a guest neither
    used = order(world, code.code.lower(), owner["id"])  # codes are case-insensitive
    assert used.status_code == 201 and used.json()["discount_codes"][0]["amount"] == "4.00"
    again = order(world, code.code, owner["id"])
    assert again.status_code == 409 and again.json()["rule"] in ("usage_limit", "once_per_customer")


def test_an_unlocked_code_works_for_anyone_but_only_once(world: World):
    installed_with_welcome(world, lock_to_customer=False, value_type="fixed_amount", value="5.00")
    signup(world)
    run_worker(world.rt.redis)
    [row] = codes(world)
    [discount] = store_discounts(world)
    assert discount["customer_ids"] is None and discount["value_type"] == "fixed_amount"
    assert order(world, row.code).status_code == 201  # a guest
    assert order(world, row.code).json()["rule"] == "usage_limit"


def test_a_free_shipping_program_creates_free_shipping_codes(world: World):
    installed_with_welcome(world, value_type="free_shipping", combines_with_shipping=True)
    customer = signup(world)
    run_worker(world.rt.redis)
    [row] = codes(world)
    assert row.status == "attached"
    [discount] = store_discounts(world)
    assert discount["kind"] == "free_shipping"
    assert discount["combines_with"]["shippingDiscounts"] is False  # Shopify refuses it on free shipping
    placed = order(world, row.code, customer["id"]).json()
    assert placed["total_price"] == "40.00"  # shipping 10.00 taken off


def test_setup_creates_metafield_definitions_the_merchant_and_theme_can_read(world: World):
    installed_with_welcome(world)
    with world.store.extensions["devstore"].session() as session:
        found = {d.key: (d.type, d.access, d.owner_type) for d in session.scalars(select(MetafieldDefinition))}
    assert len(found) == len(attachment.definitions()) == 13
    assert found["welcome_code"] == ("single_line_text_field", attachment.ACCESS, "CUSTOMER")
    assert found["welcome_code_expires_at"][0] == "date_time" and found["reward_code_url"][0] == "url"
    assert found["referral_link"] == ("url", attachment.ACCESS, "CUSTOMER")


# --- exactly once ---------------------------------------------------------------------------------

def _shopify_id(world: World, row: IssuedCode) -> int:
    with world.rt.db.session_scope() as session:
        return session.get_one(Customer, row.customer_id).shopify_customer_id


def _replay(world: World, delivery: dict, event_id: str | None = None) -> requests.Response:
    body = json.dumps(delivery["payload"]).encode() if not isinstance(delivery["payload"], str) \
        else delivery["payload"].encode()
    headers = webhook_headers("customers/create", SHOP, body, event_id=event_id or delivery["event_id"])
    return requests.post(f"{world.app_url}/webhooks", data=body, headers=headers, timeout=5)


def test_the_same_webhook_five_times_gives_one_code(world: World):
    installed_with_welcome(world)
    world.control("PUT", "/faults", json={"duplicate": True})  # devstore itself delivers it twice
    signup(world)
    [delivery, *_] = world.wait_delivered("customers/create", count=2)
    for _ in range(3):
        assert _replay(world, delivery).status_code == 200
    run_worker(world.rt.redis)

    with world.rt.db.session_scope() as session:
        assert session.scalar(select(WebhookEvent.status)) == "processed"
        assert len(session.scalars(select(WebhookEvent)).all()) == 1
    assert len(codes(world)) == 1 and len(store_discounts(world)) == 1


def test_a_customer_created_again_with_the_same_id_gets_no_second_code(world: World):
    """A new event id for the same customer (a second subscription, a re-created customer): one welcome code."""
    installed_with_welcome(world)
    signup(world)
    run_worker(world.rt.redis)
    [delivery] = world.wait_delivered("customers/create")
    assert _replay(world, delivery, event_id=str(uuid.uuid4())).status_code == 200
    run_worker(world.rt.redis)
    assert len(codes(world)) == 1 and len(store_discounts(world)) == 1
    with world.rt.db.session_scope() as session:
        assert len(session.scalars(select(WebhookEvent)).all()) == 2


def test_four_workers_creating_the_same_code_at_once_leave_one_discount(world: World):
    """No claims, no job ids: four issuers race on one reserved row straight at the store."""
    installed_with_welcome(world)
    with world.rt.db.session_scope() as session:
        session.execute(update(Program).values(active=False))  # reserve by hand, no job
    signup(world)
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        program = session.scalars(select(Program).where(Program.kind == "welcome")).one()
        customer = session.scalars(select(Customer)).one()
        row, _ = reserve(session, program, customer, "race:1")
        code_id = row.id
    shop = world.shop()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def race(n: int) -> None:
        issuer = Issuer(world.rt.db, world.rt.settings, world.rt.admin_client(shop.id, shop.domain),
                        ShopRef(shop.id, shop.domain), claimant=f"racer-{n}")
        [mine] = issuer.load([code_id])
        barrier.wait()
        try:
            issuer.attach([issuer.create(mine)])
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    [row] = codes(world)
    [discount] = store_discounts(world)
    assert row.status == "attached" and row.discount_gid == discount["admin_graphql_api_id"]
    assert reference_tag(row.id) in _discount_tags(world)
    assert row.create_attempts >= 1


def _discount_tags(world: World) -> list[str]:
    with world.store.extensions["devstore"].session() as session:
        return [tag for d in session.scalars(select(Discount)) for tag in d.tags]


def test_a_lost_answer_to_the_create_is_adopted_not_created_twice(world: World, monkeypatch):
    """The store accepted the discount but its answer never came: the retry finds it by code."""
    monkeypatch.setattr(client, "TIMEOUT", (1.0, 0.5))
    monkeypatch.setattr(client, "RETRY_DELAYS", (0.05, 0.05))
    installed_with_welcome(world)
    world.control("PUT", "/faults", json={"graphql_answer_lost": 1, "timeout_seconds": 2})
    signup(world)
    run_worker(world.rt.redis)

    [row] = codes(world)
    # The client's own retry of the create was answered TAKEN; the look-up found it was ours.
    assert row.status == "attached" and row.create_attempts == 1
    assert len(store_discounts(world)) == 1


@pytest.mark.parametrize("fault", [{"graphql_5xx": 2}, {"graphql_timeout": 1, "timeout_seconds": 1.5}])
def test_store_errors_and_timeouts_are_recovered(world: World, monkeypatch, fault: dict):
    monkeypatch.setattr(client, "TIMEOUT", (1.0, 0.5))
    monkeypatch.setattr(client, "RETRY_DELAYS", (0.05, 0.05))
    installed_with_welcome(world)
    world.control("PUT", "/faults", json=fault)
    signup(world)
    run_worker(world.rt.redis)
    # A timed-out create still runs on the store once its delay is over: wait for it, then count.
    time.sleep(fault.get("timeout_seconds", 0))
    [row] = codes(world)
    assert row.status == "attached"
    assert len(store_discounts(world)) == 1


def test_a_code_taken_by_another_discount_is_drawn_again(world: World):
    installed_with_welcome(world)
    with world.rt.db.session_scope() as session:
        session.execute(update(Program).values(active=False))
    signup(world)
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        program = session.scalars(select(Program).where(Program.kind == "welcome")).one()
        row, _ = reserve(session, program, session.scalars(select(Customer)).one(), "taken:1")
        taken = row.code
    # The merchant made a discount with that very code (in lower case) before the job ran.
    shop = world.shop()
    world.rt.admin_client(shop.id, shop.domain).mutate("discountCodeBasicCreate", {"basicCodeDiscount": {
        "title": "Merchant's own", "code": taken.lower(), "startsAt": "2026-01-01T00:00:00Z",
        "customerGets": {"value": {"percentage": 0.5}, "items": {"all": True}}, "context": {"all": "ALL"}}})
    assert enqueue_issuance(world.rt.redis, shop.id)
    run_worker(world.rt.redis)

    [row] = codes(world)
    assert row.status == "attached" and row.code != taken
    assert sorted(c["code"].upper() for d in store_discounts(world) for c in d["codes"]) == sorted([taken, row.code])


# --- when not to issue ----------------------------------------------------------------------------

def test_no_code_while_the_welcome_program_is_off(world: World, caplog):
    installed_with_welcome(world, active=False)
    signup(world)
    with caplog.at_level("INFO"):
        run_worker(world.rt.redis)
    assert codes(world) == [] and store_discounts(world) == []
    assert "welcome program is off" in caplog.text
    with world.rt.db.session_scope() as session:
        assert len(session.scalars(select(Customer)).all()) == 1  # the customer is still known


def test_an_uninstalled_shops_pending_codes_stop_quietly(world: World):
    installed_with_welcome(world)
    signup(world)  # reserved and queued, not yet run
    world.control("POST", "/uninstall")
    world.wait_delivered("app/uninstalled")
    run_worker(world.rt.redis)  # app/uninstalled first (webhooks queue), then the issue job

    [row] = codes(world)
    assert row.status == "failed" and "uninstalled" in row.last_error
    assert store_discounts(world) == []
    assert FailedJobRegistry("default", connection=world.rt.redis).count == 0  # ended, not crashed


def test_a_change_to_the_program_does_not_change_a_reserved_codes_terms(world: World):
    installed_with_welcome(world, value=10)
    with world.rt.db.session_scope() as session:
        session.execute(update(Program).values(active=True))
    signup(world)
    # The webhook job reserves the code; before its issue job runs the merchant changes the value.
    Worker(["webhooks"], connection=world.rt.redis).work(burst=True)
    set_program(world, value=50)
    run_worker(world.rt.redis)
    [discount] = store_discounts(world)
    assert discount["value"] == "0.1000"
    assert set_program(world).value == 50


def test_a_code_whose_job_was_lost_is_picked_up_by_the_sweep(world: World):
    """Redis was down when the code was reserved (or the job vanished): the scheduler's sweep finds it."""
    installed_with_welcome(world)
    signup(world)
    Worker(["webhooks"], connection=world.rt.redis).work(burst=True)  # reserved and queued ...
    Queue("default", connection=world.rt.redis).empty()  # ... and the job lost
    assert requeue_stranded_codes() == {"issue": 0, "revoke": 0}  # too recent to call stranded
    with world.rt.db.session_scope() as session:
        session.execute(update(IssuedCode).values(updated_at=datetime(2026, 1, 1, tzinfo=UTC)))
    assert requeue_stranded_codes() == {"issue": 1, "revoke": 0}
    assert requeue_stranded_codes() == {"issue": 0, "revoke": 0}  # queued once
    run_worker(world.rt.redis)
    [row] = codes(world)
    assert row.status == "attached"


def test_the_codes_link_opens_the_store_with_the_code_in_the_cart(world: World):
    installed_with_welcome(world, redirect_path="/collections/sale")
    customer = signup(world)
    run_worker(world.rt.redis)
    metafields = store_customer(world, customer["id"])["metafields"]
    link = next(m["value"] for m in metafields if m["key"] == "welcome_code_url")
    [row] = codes(world)
    opened = requests.get(link, allow_redirects=False, timeout=5)
    assert opened.status_code == 302 and opened.cookies["discount_code"] == row.code
    page = requests.get(link, timeout=5)
    assert f"Discount code {row.code} will be applied at checkout (Shopify would now open /collections/sale)" \
        in page.text
