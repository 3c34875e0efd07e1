"""Hostile deliveries with valid signatures: each is answered 400 with a plain reason, logged, and
leaves the inbox and the queue exactly as they were. Never a 500.

The app secret also signs session tokens and OAuth callbacks, so "validly signed" bytes are within
anyone's reach; every body here is signed with the real secret and sent to the real Flask app.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from rq import Queue
from sqlalchemy import select

from app.models import WebhookEvent
from tests.helpers import make_shop, post_webhook, webhook_headers

SHOP = "demo.myshopify.com"
TOO_BIG = 2**63  # one past the largest 64-bit id


def js(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def compliance(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"shop_id": 954889, "shop_domain": SHOP, "customer": {"id": 191167},
                            "orders_to_redact": [299938]}
    body.update(fields)
    return body


def data_request(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"shop_id": 954889, "shop_domain": SHOP, "customer": {"id": 191167},
                            "orders_requested": [299938], "data_request": {"id": 9999}}
    body.update(fields)
    return body


def case(case_id: str, topic: str, body: bytes, reason: str, **headers: str):  # type: ignore[no-untyped-def]
    return pytest.param(topic, body, headers, reason, id=case_id)


BODY_CASES = [
    # Structure: what json would choke on, or what PostgreSQL text cannot hold.
    case("nested-arrays", "customers/create", b'{"id": 1, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
         "nested too deeply"),
    case("nested-objects", "customers/create", b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
    case("nested-unhandled-topic", "products/update", b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    case("nul-escape-in-value", "customers/create", b'{"id": 1, "first_name": "a\\u0000b"}', "NUL character"),
    case("nul-escape-in-key", "customers/create", b'{"id": 1, "a\\u0000": 1}', "NUL character"),
    case("nul-escape-in-unhandled-topic", "products/update", b'{"title": "\\u0000"}', "NUL character"),
    case("raw-nul-in-string", "customers/create", b'{"id": 1, "first_name": "a\x00b"}', "body is not JSON"),
    case("raw-nul-after-object", "customers/create", b'{"id": 1}\x00', "body is not JSON"),
    case("lone-surrogate", "customers/create", b'{"id": 1, "first_name": "\\ud800"}', "surrogate"),
    case("huge-integer", "customers/create", b'{"id": 1, "n": ' + b"9" * 5000 + b"}", "body is not JSON"),
    case("infinity", "orders/paid", b'{"id": 1, "total_price": Infinity}', "body is not JSON"),
    # Encodings: Shopify sends UTF-8 only; json.loads(bytes) would have guessed the others.
    case("utf-16-with-bom", "customers/create", '{"id": 1}'.encode("utf-16"), "body is not UTF-8 text"),
    case("utf-16-be-no-bom", "customers/create", '{"id": 1}'.encode("utf-16-be"), "body is not JSON"),
    case("utf-32", "customers/create", '{"id": 1}'.encode("utf-32"), "body is not UTF-8 text"),
    case("utf-8-bom", "customers/create", b"\xef\xbb\xbf" + b'{"id": 1}', "Unexpected UTF-8 BOM"),
    case("latin-1", "customers/create", '{"id": 1, "first_name": "Jos\xe9"}'.encode("latin-1"),
         "body is not UTF-8 text"),
    # Ids: 64-bit positive integers (Shopify's ids; our BigInteger columns), as numbers or digit strings.
    case("id-2^63", "customers/create", js({"id": TOO_BIG}), "body's id is not a positive integer below 2^63"),
    case("id-2^64-string", "customers/create", js({"id": str(2**64)}), "body's id is not a positive integer"),
    case("id-2^63-string", "customers/create", js({"id": str(TOO_BIG)}), "body's id is not a positive integer"),
    case("id-zero", "customers/create", js({"id": 0}), "body's id is not a positive integer"),
    case("id-negative", "customers/create", js({"id": -1}), "body's id is not a positive integer"),
    case("id-float", "customers/create", js({"id": 1.5}), "body's id is not a positive integer"),
    case("id-word", "customers/create", js({"id": "abc"}), "body's id is not a positive integer"),
    case("id-digits-and-word", "customers/create", js({"id": "12abc"}), "body's id is not a positive integer"),
    case("id-arabic-digits", "customers/create", js({"id": "\u0661\u0662"}), "body's id is not a positive integer"),
    case("id-true", "customers/create", js({"id": True}), "body's id is not a positive integer"),
    case("id-list", "customers/create", js({"id": [1]}), "body's id is not a positive integer"),
    case("id-object", "customers/create", js({"id": {"id": 1}}), "body's id is not a positive integer"),
    case("id-missing", "customers/create", js({"email": "x@example.com"}), "body has no id"),
    case("order-id-2^63", "orders/paid", js({"id": TOO_BIG}), "body's id is not a positive integer"),
    case("order-customer-id-2^63", "orders/paid", js({"id": 1, "customer": {"id": TOO_BIG}}),
         "body's customer.id is not a positive integer"),
    case("order-customer-not-object", "orders/paid", js({"id": 1, "customer": "x"}),
         "body's customer is not an object"),
    case("cancelled-id-word", "orders/cancelled", js({"id": "x"}), "body's id is not a positive integer"),
    case("cancelled-customer-id-2^63", "orders/cancelled", js({"id": 1, "customer": {"id": TOO_BIG}}),
         "body's customer.id is not a positive integer"),
    case("refund-no-order-id", "refunds/create", js({"id": 1}), "body has no order_id"),
    case("refund-order-id-2^63", "refunds/create", js({"id": 1, "order_id": TOO_BIG}),
         "body's order_id is not a positive integer"),
    case("refund-id-missing", "refunds/create", js({"order_id": 1}), "body has no id"),
    case("redact-customer-id-2^63", "customers/redact", js(compliance(customer={"id": TOO_BIG})),
         "body's customer.id is not a positive integer"),
    case("redact-customer-id-word", "customers/redact", js(compliance(customer={"id": "x"})),
         "body's customer.id is not a positive integer"),
    case("redact-no-customer", "customers/redact", js(compliance(customer=None)), "body has no customer"),
    case("redact-orders-2^63", "customers/redact", js(compliance(orders_to_redact=[1, TOO_BIG])),
         "body's orders_to_redact[1] is not a positive integer"),
    case("redact-orders-not-list", "customers/redact", js(compliance(orders_to_redact="1,2")),
         "body's orders_to_redact is not a list"),
    case("data-request-id-2^63", "customers/data_request", js(data_request(data_request={"id": TOO_BIG})),
         "body's data_request.id is not a positive integer"),
    case("data-request-no-request", "customers/data_request", js(data_request(data_request=None)),
         "body has no data_request"),
    case("data-request-orders-word", "customers/data_request", js(data_request(orders_requested=["x"])),
         "body's orders_requested[0] is not a positive integer"),
    case("shop-redact-shop-id-2^63", "shop/redact", js({"shop_id": TOO_BIG, "shop_domain": SHOP}),
         "body's shop_id is not a positive integer"),
    case("uninstalled-id-word", "app/uninstalled", js({"id": "x", "myshopify_domain": SHOP}),
         "body's id is not a positive integer"),
]

OK_BODY = b'{"id": 1}'
HEADER_CASES = [
    case("shop-64-char-name", "customers/create", OK_BODY, "X-Shopify-Shop-Domain",
         **{"X-Shopify-Shop-Domain": "a" * 64 + ".myshopify.com"}),
    case("shop-header-5000-chars", "customers/create", OK_BODY, "X-Shopify-Shop-Domain",
         **{"X-Shopify-Shop-Domain": "a" * 5000 + ".myshopify.com"}),
    case("shop-leading-hyphen", "customers/create", OK_BODY, "X-Shopify-Shop-Domain",
         **{"X-Shopify-Shop-Domain": "-demo.myshopify.com"}),
    case("shop-non-ascii", "customers/create", OK_BODY, "X-Shopify-Shop-Domain",
         **{"X-Shopify-Shop-Domain": "d\xe9mo.myshopify.com"}),
    case("shop-nul", "customers/create", OK_BODY, "X-Shopify-Shop-Domain",
         **{"X-Shopify-Shop-Domain": "demo.myshopify.com\x00"}),
    case("shop-suffix", "customers/create", OK_BODY, "X-Shopify-Shop-Domain",
         **{"X-Shopify-Shop-Domain": "demo.myshopify.com.evil.com"}),
    case("event-id-256-chars", "customers/create", OK_BODY, "X-Shopify-Event-Id",
         **{"X-Shopify-Event-Id": "e" * 256}),
    case("event-id-100k-chars", "customers/create", OK_BODY, "X-Shopify-Event-Id",
         **{"X-Shopify-Event-Id": "e" * 100_000}),
    case("event-id-nul", "customers/create", OK_BODY, "X-Shopify-Event-Id", **{"X-Shopify-Event-Id": "evt\x001"}),
    case("event-id-space", "customers/create", OK_BODY, "X-Shopify-Event-Id", **{"X-Shopify-Event-Id": "evt 1"}),
    case("event-id-non-ascii", "customers/create", OK_BODY, "X-Shopify-Event-Id", **{"X-Shopify-Event-Id": "\xe9"}),
    case("webhook-id-256-chars", "customers/create", OK_BODY, "X-Shopify-Webhook-Id",
         **{"X-Shopify-Webhook-Id": "w" * 256}),
    case("topic-nul", "customers/create", OK_BODY, "X-Shopify-Topic", **{"X-Shopify-Topic": "customers/create\x00"}),
    case("topic-101-chars", "customers/create", OK_BODY, "X-Shopify-Topic", **{"X-Shopify-Topic": "t" * 101}),
    case("topic-control-char", "customers/create", OK_BODY, "X-Shopify-Topic", **{"X-Shopify-Topic": "a\x01b"}),
]


def inbox(db) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    db.expire_all()
    return [tuple(row) for row in db.execute(select(WebhookEvent.__table__).order_by(WebhookEvent.id))]


@pytest.fixture
def known_shop(client, db, rt, redis):  # type: ignore[no-untyped-def]
    """A known shop with one event already in the inbox and the queue: the "before" the case must not change."""
    make_shop(db, rt.cipher)
    assert post_webhook(client, "customers/create", SHOP, {"id": 5}).status_code == 200
    return inbox(db), Queue("webhooks", connection=redis).job_ids


@pytest.mark.parametrize(("topic", "body", "headers", "reason"), BODY_CASES + HEADER_CASES)
def test_a_hostile_signed_delivery_is_400_and_changes_nothing(client, db, redis, caplog, known_shop, topic, body,
                                                              headers, reason):
    before, queued_before = known_shop
    caplog.set_level(logging.INFO)
    response = client.post("/webhooks", data=body, headers=webhook_headers(topic, SHOP, body, **headers))

    assert response.status_code == 400
    assert reason in response.json["error"]
    assert inbox(db) == before
    assert Queue("webhooks", connection=redis).job_ids == queued_before
    [record] = [r for r in caplog.records if r.getMessage() == "webhook refused"]
    assert record.levelno == logging.WARNING and reason in record.reason


@pytest.mark.parametrize(("payload", "customer_id"), [
    ({"id": TOO_BIG - 1}, TOO_BIG - 1),  # the largest id there is
    ({"id": "42"}, 42),  # ids as digit strings are read as numbers
])
def test_ids_up_to_64_bits_are_taken(client, db, known_shop, payload, customer_id):
    assert post_webhook(client, "customers/create", SHOP, payload).status_code == 200
    assert len(inbox(db)) == 2


@pytest.mark.parametrize("body", [
    b'{"id": 1, "first_name": "\\ud83d\\ude00"}',  # an escaped surrogate pair: one emoji
    b'{"id": 1, "note": "\\\\u0000"}',  # an escaped backslash, then the text u0000: no NUL
    b'{"id": 1, "note": "\\u0026 \\u00e9"}',  # escapes Shopify's JSON does use
    '{"id": 1, "first_name": "J\u00f6rg \U0001f600"}'.encode(),  # raw UTF-8
])
def test_escapes_that_make_no_nul_or_lone_surrogate_are_taken(client, db, known_shop, body):
    assert post_webhook(client, "customers/create", SHOP, body).status_code == 200
    assert len(inbox(db)) == 2


def test_a_63_character_shop_name_is_a_shop(client, db, rt, redis):
    longest = "a" * 63 + ".myshopify.com"
    make_shop(db, rt.cipher, domain=longest)
    assert post_webhook(client, "customers/create", longest, {"id": 1}).status_code == 200
    assert [row.shop_domain for row in db.scalars(select(WebhookEvent))] == [longest]


@pytest.mark.parametrize(("header", "value"), [
    ("X-Shopify-API-Version", "2026-10\x00"),
    ("X-Shopify-API-Version", "x" * 5000),
    ("X-Shopify-Triggered-At", "0001-01-01T00:00:00+05:00"),  # out of range once in UTC
    ("X-Shopify-Triggered-At", "9999-12-31T23:59:59-05:00"),
    ("X-Shopify-Triggered-At", "1970-01-01T00:00:00Z"),
    ("X-Shopify-Triggered-At", "2026-11-20T10:00:00\x00"),
    ("X-Shopify-Triggered-At", "yesterday"),
])
def test_odd_optional_headers_are_dropped_not_fatal(client, db, rt, redis, header, value):
    make_shop(db, rt.cipher)
    assert post_webhook(client, "customers/create", SHOP, {"id": 1}, **{header: value}).status_code == 200
    [event] = db.scalars(select(WebhookEvent)).all()
    assert (event.api_version if header == "X-Shopify-API-Version" else event.triggered_at) is None
