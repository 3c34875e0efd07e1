"""POST /webhooks: signature, inbox record, de-duplication, enqueue, and the failure paths."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from rq import Queue
from sqlalchemy import func, select

from app import inbox, runtime
from app.db import utcnow
from app.models import WebhookEvent
from tests.conftest import API_SECRET, run_worker
from tests.helpers import make_shop, post_webhook, webhook_headers, webhook_signature

SHOP = "demo.myshopify.com"
ALL_TOPICS = ["app/uninstalled", "customers/create", "customers/data_request", "customers/redact",
              "shop/redact", "orders/paid", "products/update"]


def events(db) -> list[WebhookEvent]:  # type: ignore[no-untyped-def]
    db.expire_all()
    return list(db.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def queued(redis) -> list[str]:  # type: ignore[no-untyped-def]
    return Queue("webhooks", connection=redis).job_ids


def test_signature_vector_is_shopifys_algorithm():
    # Independent vector from the platform notes: secret "hush", body {"id":1}.
    assert webhook_signature(b'{"id":1}', "hush") == "VnKUjZsLuN5iZWjn5EntcBVCF9kMN43LglzCE1/GSeY="


def test_valid_delivery_is_recorded_and_queued_under_the_event_id(client, db, rt, redis):
    make_shop(db, rt.cipher)
    event_id = str(uuid.uuid4())
    response = post_webhook(client, "customers/create", SHOP, {"id": 42}, event_id=event_id)
    assert response.status_code == 200
    [event] = events(db)
    assert (event.event_id, event.topic, event.shop_domain, event.status) == (event_id, "customers/create", SHOP,
                                                                              "pending")
    assert event.webhook_id and event.triggered_at is not None and event.api_version == "2026-10"
    assert queued(redis) == [event_id]


def test_the_raw_body_is_what_is_signed(client, db, rt, redis):
    make_shop(db, rt.cipher)
    raw = b'{"id":   42,\n "email": null, "z": 1, "a": 2}'
    assert post_webhook(client, "customers/create", SHOP, raw).status_code == 200
    assert events(db)[0].payload == raw.decode()  # kept byte for byte, never re-serialised

    reserialised = json.dumps(json.loads(raw)).encode()
    headers = webhook_headers("customers/create", SHOP, reserialised)
    # A signature over re-serialised JSON does not match the bytes actually sent.
    response = client.post("/webhooks", data=raw, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize("topic", ALL_TOPICS)
@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl", "wrong-secret", "hex"])
def test_every_topic_answers_401_to_a_bad_or_missing_signature(client, db, rt, redis, topic, signature):
    make_shop(db, rt.cipher)
    body = json.dumps({"shop_domain": SHOP, "customer": {"id": 1}}).encode()
    headers = webhook_headers(topic, SHOP, body)
    if signature is None:
        del headers["X-Shopify-Hmac-Sha256"]
    elif signature == "wrong-secret":
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(body, "some-other-secret")
    elif signature == "hex":
        import hashlib
        import hmac

        headers["X-Shopify-Hmac-Sha256"] = hmac.new(API_SECRET.encode(), body, hashlib.sha256).hexdigest()
    else:
        headers["X-Shopify-Hmac-Sha256"] = signature
    response = client.post("/webhooks", data=body, headers=headers)
    assert response.status_code == 401
    assert events(db) == [] and queued(redis) == []


def test_previous_secret_is_accepted_during_rotation(app_factory):
    app = app_factory(shopify_api_secret="new-secret", shopify_api_secret_previous=API_SECRET)
    body = b'{"id":1}'
    response = app.test_client().post("/webhooks", data=body, headers=webhook_headers("products/update", SHOP, body))
    assert response.status_code == 200


def test_a_duplicate_delivery_is_recorded_and_queued_once(client, db, rt, redis):
    make_shop(db, rt.cipher)
    event_id = str(uuid.uuid4())
    for _ in range(3):
        assert post_webhook(client, "customers/create", SHOP, {"id": 7}, event_id=event_id).status_code == 200
    assert len(events(db)) == 1
    assert queued(redis) == [event_id]


def test_webhook_id_is_the_key_when_event_id_is_absent(client, db, rt, redis):
    make_shop(db, rt.cipher)
    body = b'{"id": 7}'
    headers = webhook_headers("customers/create", SHOP, body)
    del headers["X-Shopify-Event-Id"]
    for _ in range(2):
        assert client.post("/webhooks", data=body, headers=headers).status_code == 200
    [event] = events(db)
    assert event.event_id == headers["X-Shopify-Webhook-Id"]


def test_concurrent_duplicates_are_recorded_once(app, db, rt, redis):
    """Ten copies of one event at the same moment, each on its own connection to PostgreSQL."""
    make_shop(db, rt.cipher)
    body = b'{"id": 99}'
    headers = webhook_headers("customers/create", SHOP, body)
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def deliver() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post("/webhooks", data=body, headers=headers).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 10
    assert db.scalar(select(func.count()).select_from(WebhookEvent)) == 1
    assert queued(redis) == [headers["X-Shopify-Event-Id"]]
    run_worker(redis)
    assert events(db)[0].status == "processed"


def test_duplicates_are_recorded_once_on_sqlite_too(sqlite_app):
    rt = sqlite_app.extensions["oncecode"]
    with rt.db.session_scope() as session:
        make_shop(session, rt.cipher)
    client = sqlite_app.test_client()
    event_id = str(uuid.uuid4())
    for _ in range(3):
        assert post_webhook(client, "customers/create", SHOP, {"id": 1}, event_id=event_id).status_code == 200
    with rt.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 1
    assert queued(rt.redis) == [event_id]


@pytest.mark.parametrize(("topic", "shop", "status"), [
    ("customers/create", "gone.myshopify.com", "unknown shop"),
    ("orders/paid", "never.myshopify.com", "unknown shop"),
    ("products/update", SHOP, "topic not handled"),
    ("products/update", "never.myshopify.com", "topic not handled"),
])
def test_unknown_shop_or_topic_is_answered_and_not_recorded(client, db, rt, redis, caplog, topic, shop, status):
    import logging

    make_shop(db, rt.cipher)
    caplog.set_level(logging.INFO)
    assert post_webhook(client, topic, shop, {"id": 1, "email": "someone@example.com"}).status_code == 200
    assert events(db) == []  # its body (personal data, perhaps) is kept nowhere
    assert queued(redis) == []
    [record] = [r for r in caplog.records if r.getMessage() == f"webhook not recorded: {status}"]
    assert record.levelno == logging.INFO and record.shop == shop and record.topic == topic


@pytest.mark.parametrize("topic", ["customers/create", "products/update"])
@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "body is not JSON: Expecting property name"),
    (b"", "body is not JSON: Expecting value"),
    (b"[1, 2, 3]", "body is not a JSON object (it is an array)"),
    (b'"text"', "body is not a JSON object (it is a string)"),
    (b"42", "body is not a JSON object (it is a number)"),
    (b"null", "body is not a JSON object (it is null)"),
    (b"\xff\xfe", "body is not UTF-8 text"),
    (b'{"id": NaN}', "body is not JSON: NaN is not a JSON value"),
])
def test_a_signed_body_that_is_not_a_json_object_is_400_and_not_recorded(client, db, rt, redis, topic, body,
                                                                       reason):
    make_shop(db, rt.cipher)
    response = post_webhook(client, topic, SHOP, body)
    assert response.status_code == 400
    assert response.json["error"].startswith(reason)
    assert events(db) == [] and queued(redis) == []


@pytest.mark.parametrize(("header", "value"), [
    ("X-Shopify-Shop-Domain", "evil.com"),
    ("X-Shopify-Shop-Domain", ""),
    ("X-Shopify-Topic", ""),
])
def test_missing_or_bad_headers_under_a_valid_signature_are_400(client, db, header, value):
    body = b'{"id": 1}'
    headers = webhook_headers("customers/create", SHOP, body)
    headers[header] = value
    response = client.post("/webhooks", data=body, headers=headers)
    assert response.status_code == 400
    assert header in response.json["error"]
    assert events(db) == []


def test_a_body_over_the_limit_is_413(app_factory):
    app = app_factory(webhook_max_bytes=1024)
    body = json.dumps({"note": "x" * 2000}).encode()
    response = app.test_client().post("/webhooks", data=body, headers=webhook_headers("customers/create", SHOP, body))
    assert response.status_code == 413
    assert "1024 bytes" in response.json["error"]


def test_redis_down_keeps_the_event_and_the_sweep_queues_it_later(app_factory, db, rt, redis):
    """Point the web app at a Redis that is not there; the real one stands for Redis coming back."""
    make_shop(db, rt.cipher)
    down = app_factory(redis_url="redis://127.0.0.1:1/0")
    event_id = str(uuid.uuid4())
    response = post_webhook(down.test_client(), "customers/create", SHOP, {"id": 5}, event_id=event_id)
    runtime.activate(rt)  # jobs and the sweep use the real Redis again
    assert response.status_code == 200
    [event] = events(db)
    assert event.status == "pending" and queued(redis) == []

    # Too fresh for the sweep (it may still be on its way); once stranded long enough, it is queued.
    assert inbox.requeue_stranded(db, redis) == 0
    event.received_at = utcnow() - inbox.STRANDED_AFTER * 2
    db.commit()
    assert inbox.requeue_stranded(db, redis) == 1
    assert inbox.requeue_stranded(db, redis) == 0  # queued already: not twice
    assert queued(redis) == [event_id]
    from workers.maintenance import requeue_stranded_events

    assert requeue_stranded_events() == {"events": 0, "setups": 0}
    run_worker(redis)
    assert events(db)[0].status == "processed"


def test_database_down_answers_503_so_shopify_retries(app_factory):
    app = app_factory(database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    client = app.test_client()
    response = post_webhook(client, "customers/create", SHOP, {"id": 5})
    assert response.status_code == 503
    assert "database unavailable" in response.json["error"]
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json["database"].startswith("unreachable") and health.json["redis"] == "ok"


def test_one_shops_flood_of_webhooks_does_not_queue_ahead_of_another_shop(client, db, rt, redis):
    from rq.rate_limit import RateLimitRegistry

    from app.queues import WEBHOOK_JOBS_PER_SHOP

    make_shop(db, rt.cipher)
    make_shop(db, rt.cipher, domain="other.myshopify.com")
    flood = [str(uuid.uuid4()) for _ in range(WEBHOOK_JOBS_PER_SHOP + 6)]
    for n, event_id in enumerate(flood):
        post_webhook(client, "customers/create", SHOP, {"id": n + 1}, event_id=event_id)
    other = str(uuid.uuid4())
    post_webhook(client, "customers/create", "other.myshopify.com", {"id": 99}, event_id=other)

    # The other shop's event is next after the flood's first few, not after all of them.
    assert queued(redis) == [*flood[:WEBHOOK_JOBS_PER_SHOP], other]
    waiting = RateLimitRegistry(f"webhooks:{SHOP}", redis).get_rate_limited_job_ids()
    assert sorted(waiting) == sorted(flood[WEBHOOK_JOBS_PER_SHOP:])

    run_worker(redis)  # each finished job lets the shop's next one into the queue
    assert {e.status for e in events(db)} == {"processed"}
