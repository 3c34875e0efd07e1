"""A signed body that names a shop must name the header's shop: the HMAC does not cover the headers."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from rq import Queue
from sqlalchemy import func, select

from app.models import Customer, Shop, WebhookEvent
from tests.conftest import run_worker
from tests.helpers import make_shop, post_webhook
from tests.workers.test_lifecycle import add_customer_with_code, data_request_payload, redact_payload

A = "shop-a.myshopify.com"  # the attacker's development store: its bodies are signed by Shopify
B = "shop-b.myshopify.com"  # the victim named in the (unsigned) header


def uninstall_payload(myshopify_domain: Any, domain: Any) -> dict[str, Any]:
    return {"id": 548380009, "name": "Super Toys", "myshopify_domain": myshopify_domain, "domain": domain}


REPLAYS = [
    ("shop/redact", {"shop_id": 1, "shop_domain": A}, "shop_domain"),
    ("customers/redact", redact_payload(A, 111), "shop_domain"),
    ("customers/data_request", data_request_payload(A, 111), "shop_domain"),
    ("app/uninstalled", uninstall_payload(A, A), "myshopify_domain"),
    ("app/uninstalled", uninstall_payload(None, A), "domain"),  # Shopify's sample leaves myshopify_domain null
    ("app/uninstalled", uninstall_payload(A, "www.example.com"), "myshopify_domain"),
    ("shop/redact", {"shop_id": 1}, "shop_domain"),  # a compliance body always names its shop
    ("shop/redact", {"shop_id": 1, "shop_domain": ["shop-b.myshopify.com"]}, "shop_domain"),
    ("customers/redact", {**redact_payload(A, 111), "shop_domain": "shop-b.myshopify.com.evil.com"}, "shop_domain"),
]


def state(db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    db.expire_all()
    shop = db.scalar(select(Shop).where(Shop.domain == B))
    return {"shop": shop is not None, "installed": shop is not None and shop.is_installed,
            "customers": db.scalar(select(func.count()).select_from(Customer).where(Customer.shop_id == shop.id))
            if shop else 0}


@pytest.mark.parametrize(("topic", "payload", "field"), REPLAYS)
@pytest.mark.parametrize("b_installed", [True, False])
def test_a_body_for_shop_a_sent_with_shop_bs_header_is_refused(client, db, rt, redis, caplog, topic, payload,
                                                                field, b_installed):
    make_shop(db, rt.cipher, domain=A)
    victim = make_shop(db, rt.cipher, domain=B, installed=b_installed)  # uninstalled: shop/redact would erase it
    add_customer_with_code(db, victim, 111, "W-BBBB")
    before = state(db)
    caplog.set_level(logging.INFO)

    response = post_webhook(client, topic, B, payload)

    assert response.status_code == 400
    assert response.json["error"] == f"body's {field} does not match the X-Shopify-Shop-Domain header"
    assert db.scalar(select(func.count()).select_from(WebhookEvent)) == 0
    assert Queue("webhooks", connection=redis).job_ids == []
    run_worker(redis)
    assert state(db) == before  # shop B keeps its data, its customer and its install
    [record] = [r for r in caplog.records if r.getMessage() == "webhook refused"]
    assert record.levelno == logging.WARNING and record.shop == B and record.topic == topic
    assert field in record.reason


@pytest.mark.parametrize(("topic", "payload"), [
    ("shop/redact", {"shop_id": 1, "shop_domain": B.upper()}),  # domains compare case-insensitively
    ("app/uninstalled", uninstall_payload(B, "www.shop-b.example")),  # a custom primary domain names nothing
    ("app/uninstalled", uninstall_payload(None, None)),  # Shopify's documented sample: the header decides
    ("app/uninstalled", {"id": 548380009}),
])
def test_a_body_naming_the_headers_shop_is_taken(client, db, rt, redis, topic, payload):
    make_shop(db, rt.cipher, domain=B, installed=topic == "app/uninstalled")
    assert post_webhook(client, topic, B, payload).status_code == 200
    run_worker(redis)
    assert db.scalar(select(WebhookEvent.status)) == "processed"
    db.expire_all()
    assert db.scalar(select(Shop).where(Shop.domain == B)) is None or not state(db)["installed"]
