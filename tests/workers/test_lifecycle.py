"""Lifecycle and compliance topics, end to end: webhook in, real burst worker, database out."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from rq import Queue
from rq.job import Job
from sqlalchemy import func, select

from app.db import utcnow
from app.models import Customer, DataRequest, IssuedCode, Program, Shop, WebhookEvent
from app.queues import setup_job_id
from tests.conftest import run_worker
from tests.helpers import make_shop, post_webhook, session_token

SHOP = "demo.myshopify.com"
OTHER = "other.myshopify.com"


def count(db, model, *where) -> int:  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model).where(*where))


def add_customer_with_code(db, shop: Shop, shopify_id: int, code: str) -> Customer:  # type: ignore[no-untyped-def]
    program = db.scalar(select(Program).where(Program.shop_id == shop.id, Program.kind == "welcome"))
    if program is None:
        program = Program(shop_id=shop.id, kind="welcome", name="Welcome", value_type="percentage",
                          value=Decimal(10), code_prefix="W-", code_length=10)
        db.add(program)
        db.flush()
    customer = Customer(shop_id=shop.id, shopify_customer_id=shopify_id)
    db.add(customer)
    db.flush()
    db.add(IssuedCode(shop_id=shop.id, program_id=program.id, customer_id=customer.id, code=code,
                      idempotency_key=f"welcome:{shop.id}:{shopify_id}", status="redeemed", order_id=1001,
                      order_name="#1001", order_total=Decimal("80.00"), discount_amount=Decimal("8.00"),
                      currency="EUR"))
    db.commit()
    return customer


def redact_payload(shop: str, customer_id: int) -> dict:
    return {"shop_id": 954889, "shop_domain": shop, "customer": {"id": customer_id, "email": "john@example.com",
            "phone": "555-625-1199"}, "orders_to_redact": [125, 126]}


def data_request_payload(shop: str, customer_id: int, request_id: int = 9999) -> dict:
    return {"shop_id": 954889, "shop_domain": shop, "orders_requested": [299938, 280263],
            "customer": {"id": customer_id, "email": "john@example.com", "phone": "555-625-1199"},
            "data_request": {"id": request_id}}


# --- app/uninstalled --------------------------------------------------------------------------

def test_uninstall_forgets_the_token_and_drops_pending_work(client, db, rt, redis):
    shop = make_shop(db, rt.cipher)
    # A signup is waiting in the queue when the merchant uninstalls.
    pending_id = str(uuid.uuid4())
    post_webhook(client, "customers/create", SHOP, {"id": 5}, event_id=pending_id)
    # The uninstall jumps the queue here by running its own job first.
    post_webhook(client, "app/uninstalled", SHOP, {"id": 1, "myshopify_domain": SHOP})
    uninstall_job = [j for j in Queue("webhooks", connection=redis).job_ids if j != pending_id][0]
    Queue("webhooks", connection=redis).remove(uninstall_job)
    Queue("webhooks", connection=redis).enqueue_job(Job.fetch(uninstall_job, connection=redis), at_front=True)
    run_worker(redis)

    db.expire_all()
    shop = db.get(Shop, shop.id)
    assert shop.uninstalled_at is not None and not shop.is_installed
    assert shop.access_token is None and shop.refresh_token is None
    pending = db.scalar(select(WebhookEvent).where(WebhookEvent.event_id == pending_id))
    assert (pending.status, pending.last_error, pending.payload) == ("ignored", "shop uninstalled", None)
    assert count(db, Customer) == 0  # the dropped signup never ran
    # Data stays until shop/redact: the merchant may come back within 48 hours.
    assert count(db, Shop) == 1


def test_uninstall_twice_is_harmless_and_a_stale_one_is_ignored(client, db, rt, redis):
    shop = make_shop(db, rt.cipher)
    before_install = (shop.installed_at - timedelta(hours=1)).isoformat()
    post_webhook(client, "app/uninstalled", SHOP, {"id": 1}, **{"X-Shopify-Triggered-At": before_install})
    run_worker(redis)
    db.expire_all()
    assert db.get(Shop, shop.id).is_installed  # sent before the current install: stale

    for _ in range(2):
        post_webhook(client, "app/uninstalled", SHOP, {"id": 1})
        run_worker(redis)
    db.expire_all()
    assert not db.get(Shop, shop.id).is_installed
    assert count(db, WebhookEvent, WebhookEvent.status == "processed") == 3


# --- customers/create -------------------------------------------------------------------------

def test_customers_create_remembers_the_customer_once_and_nothing_personal(client, db, rt, redis):
    make_shop(db, rt.cipher)
    payload = {"id": 706405506930370084, "email": "bob@biller.com", "first_name": "Bob"}
    for _ in range(2):  # the same customer through two different events
        post_webhook(client, "customers/create", SHOP, payload)
    run_worker(redis)
    [customer] = db.scalars(select(Customer)).all()
    assert customer.shopify_customer_id == 706405506930370084
    assert all(e.payload is None for e in db.scalars(select(WebhookEvent)))  # handled: bodies dropped


def test_customers_create_for_an_uninstalled_shop_ends_quietly(client, db, rt, redis):
    make_shop(db, rt.cipher, installed=False)
    post_webhook(client, "customers/create", SHOP, {"id": 1})
    run_worker(redis)
    assert count(db, Customer) == 0
    assert db.scalar(select(WebhookEvent.status)) == "ignored"


# --- customers/data_request -------------------------------------------------------------------

def test_data_request_stores_what_we_hold_for_the_merchant(client, db, rt, redis, runner):
    shop = make_shop(db, rt.cipher)
    add_customer_with_code(db, shop, 111, "W-AAAA")
    add_customer_with_code(db, shop, 222, "W-BBBB")
    for _ in range(2):  # Shopify retried with a new event id: still one export
        post_webhook(client, "customers/data_request", SHOP, data_request_payload(SHOP, 111))
    run_worker(redis)

    [request] = db.scalars(select(DataRequest)).all()
    assert request.shopify_request_id == 9999 and request.shopify_customer_id == 111
    assert request.data["customer"]["shopify_customer_id"] == 111
    assert [c["code"] for c in request.data["codes"]] == ["W-AAAA"]  # not the other customer's
    assert (request.data["codes"][0]["order_total"], request.data["codes"][0]["order_name"]) == ("80.00", "#1001")
    assert request.data["orders_requested"] == [299938, 280263]
    assert "john@example.com" not in json.dumps(request.data)

    # The merchant fetches it: from the CLI, and from the API with a session token.
    shown = runner.invoke(args=["data-requests", "show", SHOP, str(request.id)])
    assert shown.exit_code == 0 and json.loads(shown.output)["codes"][0]["code"] == "W-AAAA"
    listed = client.get("/api/data-requests", headers={"Authorization": f"Bearer {session_token(SHOP)}"})
    assert listed.status_code == 200 and listed.json["data_requests"][0]["id"] == request.id
    one = client.get(f"/api/data-requests/{request.id}", headers={"Authorization": f"Bearer {session_token(SHOP)}"})
    assert one.json["data"]["customer"]["shopify_customer_id"] == 111


def test_data_request_api_is_scoped_to_the_token_shop(client, db, rt, redis):
    shop = make_shop(db, rt.cipher)
    make_shop(db, rt.cipher, domain=OTHER)
    add_customer_with_code(db, shop, 111, "W-AAAA")
    post_webhook(client, "customers/data_request", SHOP, data_request_payload(SHOP, 111))
    run_worker(redis)
    request_id = db.scalar(select(DataRequest.id))

    other = {"Authorization": f"Bearer {session_token(OTHER)}"}
    assert client.get("/api/data-requests", headers=other).json == {"data_requests": []}
    assert client.get(f"/api/data-requests/{request_id}", headers=other).status_code == 404
    assert client.get("/api/data-requests").status_code == 401
    forged = {"Authorization": f"Bearer {session_token(SHOP, secret='not-the-app-secret-but-32-bytes-long')}"}
    assert client.get("/api/data-requests", headers=forged).status_code == 401


def test_data_request_for_a_customer_we_never_saw(client, db, rt, redis):
    make_shop(db, rt.cipher)
    post_webhook(client, "customers/data_request", SHOP, data_request_payload(SHOP, 555))
    run_worker(redis)
    [request] = db.scalars(select(DataRequest)).all()
    assert request.data["customer"] is None and request.data["codes"] == []


# --- customers/redact -------------------------------------------------------------------------

def test_customer_redact_erases_that_customer_and_nothing_else(client, db, rt, redis):
    shop = make_shop(db, rt.cipher)
    other_shop = make_shop(db, rt.cipher, domain=OTHER)
    add_customer_with_code(db, shop, 111, "W-AAAA")
    add_customer_with_code(db, shop, 222, "W-BBBB")
    add_customer_with_code(db, other_shop, 111, "W-CCCC")  # same Shopify id, another store
    post_webhook(client, "customers/data_request", SHOP, data_request_payload(SHOP, 111))
    run_worker(redis)
    # A failed event still holding the customer's details in its body.
    post_webhook(client, "customers/create", SHOP, {"id": 111, "email": "john@example.com"})
    db.execute(WebhookEvent.__table__.update().where(WebhookEvent.topic == "customers/create")
               .values(status="failed"))
    db.commit()
    Queue("webhooks", connection=redis).empty()

    for _ in range(2):  # duplicates are harmless
        post_webhook(client, "customers/redact", SHOP, redact_payload(SHOP, 111))
        run_worker(redis)

    db.expire_all()
    assert db.scalars(select(Customer.shopify_customer_id).where(Customer.shop_id == shop.id)).all() == [222]
    assert count(db, Customer, Customer.shop_id == other_shop.id) == 1
    codes = {c.code: c for c in db.scalars(select(IssuedCode))}
    assert set(codes) == {"W-AAAA", "W-BBBB", "W-CCCC"}  # statistics stay
    assert codes["W-AAAA"].customer_id is None and codes["W-AAAA"].order_total == Decimal("80.00")
    assert codes["W-BBBB"].customer_id is not None and codes["W-CCCC"].customer_id is not None
    assert count(db, DataRequest) == 0
    leftovers = [e.payload for e in db.scalars(select(WebhookEvent)) if e.payload]
    assert not any("john@example.com" in p for p in leftovers)


# --- shop/redact ------------------------------------------------------------------------------

def test_shop_redact_erases_everything_for_that_shop_only(client, db, rt, redis):
    shop = make_shop(db, rt.cipher, installed=False)
    other_shop = make_shop(db, rt.cipher, domain=OTHER)
    add_customer_with_code(db, shop, 111, "W-AAAA")
    add_customer_with_code(db, other_shop, 111, "W-CCCC")
    post_webhook(client, "customers/data_request", SHOP, data_request_payload(SHOP, 111))
    post_webhook(client, "customers/create", OTHER, {"id": 333})
    run_worker(redis)

    shop_id, other_id = shop.id, other_shop.id
    for _ in range(2):
        post_webhook(client, "shop/redact", SHOP, {"shop_id": 954889, "shop_domain": SHOP})
        run_worker(redis)

    db.expire_all()
    assert db.scalars(select(Shop.domain)).all() == [OTHER]
    for model in (Program, Customer, IssuedCode, DataRequest):
        assert count(db, model, model.shop_id == shop_id) == 0
    assert count(db, Customer, Customer.shop_id == other_id) == 2
    assert count(db, IssuedCode, IssuedCode.shop_id == other_id) == 1
    remaining = db.scalars(select(WebhookEvent).where(WebhookEvent.shop_domain == SHOP)).all()
    # Only the redact event itself remains, with no body: the de-duplication record, nothing about the
    # shop's customers. The repeat was not recorded: the shop is unknown by then.
    assert [(e.topic, e.status, e.payload) for e in remaining] == [("shop/redact", "processed", None)]
    assert count(db, WebhookEvent, WebhookEvent.shop_domain == OTHER) == 1


def test_shop_redact_for_an_installed_shop_is_answered_and_not_recorded(client, db, rt, redis, caplog):
    import logging

    shop = make_shop(db, rt.cipher)  # reinstalled since it uninstalled: Shopify's redact is for the old install
    add_customer_with_code(db, shop, 111, "W-AAAA")
    caplog.set_level(logging.INFO)
    response = post_webhook(client, "shop/redact", SHOP, {"shop_id": 1, "shop_domain": SHOP})
    assert response.status_code == 200
    assert count(db, WebhookEvent) == 0 and Queue("webhooks", connection=redis).job_ids == []
    run_worker(redis)
    assert count(db, Shop) == 1 and count(db, Customer) == 1 and count(db, IssuedCode) == 1
    [record] = [r for r in caplog.records if r.getMessage().startswith("shop/redact not recorded")]
    assert record.levelno == logging.WARNING and record.shop == SHOP


def test_shop_redact_for_a_shop_that_reinstalled_before_the_job_ran_erases_nothing(client, db, rt, redis, caplog):
    import logging

    from app import lifecycle
    from app.shopify.oauth import TokenGrant

    shop = make_shop(db, rt.cipher, installed=False)
    add_customer_with_code(db, shop, 111, "W-AAAA")
    event_id = str(uuid.uuid4())
    assert post_webhook(client, "shop/redact", SHOP, {"shop_id": 1, "shop_domain": SHOP},
                        event_id=event_id).status_code == 200
    # The merchant reinstalls while the redact waits in the queue.
    grant = TokenGrant("shpat_again", ("read_customers",), utcnow() + timedelta(hours=1), "shprt_again", None)
    lifecycle.install(db, SHOP, grant, "2026-10", rt.cipher)
    db.commit()
    caplog.set_level(logging.INFO)
    run_worker(redis)

    assert count(db, Shop) == 1 and count(db, Customer) == 1 and count(db, IssuedCode) == 1
    event = db.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))
    assert (event.status, event.last_error, event.payload) == ("ignored", lifecycle.SHOP_STILL_INSTALLED, None)
    [record] = [r for r in caplog.records if r.getMessage() == "shop/redact refused: the shop is installed"]
    assert record.levelno == logging.WARNING and record.shop == SHOP and record.event_id == event_id


# --- failures ---------------------------------------------------------------------------------

def test_a_permanent_failure_is_recorded_and_visible(client, db, rt, redis, runner):
    make_shop(db, rt.cipher)
    post_webhook(client, "orders/paid", SHOP, {"id": 1001})  # no totals: cannot be reconciled
    run_worker(redis)
    [event] = db.scalars(select(WebhookEvent)).all()
    assert event.status == "failed" and event.attempts == 1 and "has no total_price" in event.last_error
    listed = runner.invoke(args=["events", "list", "--status", "failed"])
    assert event.event_id in listed.output and "has no total_price" in listed.output


def test_a_transient_failure_is_retried_by_rq(client, db, rt, redis, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from app.codes import welcome

    make_shop(db, rt.cipher)

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(welcome, "customer_signed_up", flaky)
    event_id = str(uuid.uuid4())
    post_webhook(client, "customers/create", SHOP, {"id": 1}, event_id=event_id)
    run_worker(redis)
    db.expire_all()
    event = db.scalar(select(WebhookEvent))
    assert event.status == "pending" and event.attempts == 1 and "OperationalError" in event.last_error
    job = Job.fetch(event_id, connection=redis)
    assert job.get_status() == "scheduled" and job.retries_left == 7

    monkeypatch.undo()
    job.requeue() if job.get_status() == "failed" else Queue("webhooks", connection=redis).enqueue_job(job)
    run_worker(redis)
    db.expire_all()
    assert db.scalar(select(WebhookEvent.status)) == "processed" and count(db, Customer) == 1


@pytest.mark.parametrize("topic", ["customers/redact", "customers/data_request", "shop/redact"])
def test_compliance_topics_for_an_unknown_shop_are_answered_and_not_recorded(client, db, redis, topic):
    # Nothing to erase or report: never installed, or erased by shop/redact already.
    payload = data_request_payload("gone.myshopify.com", 1) if topic == "customers/data_request" else \
        redact_payload("gone.myshopify.com", 1)
    response = post_webhook(client, topic, "gone.myshopify.com", payload)
    assert response.status_code == 200
    assert count(db, WebhookEvent) == 0 and Queue("webhooks", connection=redis).job_ids == []


def test_events_retry_runs_a_failed_event_again(client, db, rt, redis, runner):
    make_shop(db, rt.cipher)
    event_id = str(uuid.uuid4())
    post_webhook(client, "customers/create", SHOP, {"id": 8}, event_id=event_id)
    db.execute(WebhookEvent.__table__.update().values(status="failed", last_error="boom"))
    db.commit()
    Queue("webhooks", connection=redis).empty()
    result = runner.invoke(args=["events", "retry", event_id])
    assert result.exit_code == 0 and "queued" in result.output
    run_worker(redis)
    assert count(db, Customer) == 1
    assert runner.invoke(args=["events", "retry", "nope"]).exit_code != 0


def test_setup_left_unfinished_is_requeued_by_the_sweep(db, rt, redis):
    from app import inbox

    shop = make_shop(db, rt.cipher, set_up=False)
    assert inbox.requeue_unfinished_setups(db, redis) == 1
    assert inbox.requeue_unfinished_setups(db, redis) == 0
    assert Queue("default", connection=redis).job_ids == [setup_job_id(shop.id, shop.installed_at)]
    shop.installed_at = utcnow()  # a fresh install's own job may still be on its way
    db.commit()
    Queue("default", connection=redis).empty()
    redis.flushdb()
    assert inbox.requeue_unfinished_setups(db, redis) == 0


def test_two_first_installs_at_once_make_one_shop(rt):
    """Two OAuth callbacks for a new shop race on separate connections: one row, no error."""
    import threading

    from app import lifecycle
    from app.shopify.oauth import TokenGrant

    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def install(n: int) -> None:
        grant = TokenGrant(f"shpat_{n}", ("read_customers",), utcnow() + timedelta(hours=1), f"shprt_{n}", None)
        with rt.db.session_scope() as session:
            barrier.wait()
            try:
                lifecycle.install(session, "race.myshopify.com", grant, "2026-10", rt.cipher)
            except BaseException as exc:  # noqa: BLE001  collected for the assertion below
                errors.append(exc)
                raise

    threads = [threading.Thread(target=install, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with rt.db.session_scope() as session:
        [shop] = session.scalars(select(Shop)).all()
        assert rt.cipher.decrypt(shop.access_token).startswith("shpat_")


def test_default_programs_are_created_once_even_by_racing_setups(db, rt):
    import threading

    from app import lifecycle

    shop = make_shop(db, rt.cipher)
    barrier = threading.Barrier(3)
    created: list[int] = []

    def setup() -> None:
        with rt.db.session_scope() as session:
            barrier.wait()
            created.append(lifecycle.create_default_programs(session, shop.id))

    threads = [threading.Thread(target=setup) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(created) == 3
    kinds = db.scalars(select(Program.kind).where(Program.shop_id == shop.id).order_by(Program.kind)).all()
    assert kinds == ["referral_friend", "referral_reward", "welcome"]
    assert not any(db.scalars(select(Program.active)))
