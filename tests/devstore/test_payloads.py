"""Webhook payloads against Shopify's published samples: every field of a sample is in devstore's
payload with the same JSON type (where the sample has null, any type will do), nested objects too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.config import ROOT
from devstore import checkout, oauth
from devstore.models import Delivery, Installation
from tests.devstore.conftest import DEVSTORE_KEY, SHOP
from tests.devstore.factories import make_discount, subscribe

SAMPLES = next(p for p in (ROOT.parent / "shared/reference/samples", Path("/work/shared/reference/samples"))
               if p.is_dir())
# A paid order is not cancelled: Shopify sends null for these, while the published sample is of a
# cancelled (voided) order and has strings. Sending strings would tell the app every order was cancelled.
NULL_WHEN_NOT_CANCELLED = {"cancel_reason", "cancelled_at"}
ADDRESS = {"company": "Engines Ltd", "address1": "1 Analytical Way", "city": "London", "zip": "N1 9GU",
           "province": "England", "province_code": "ENG", "country": "GB", "country_code": "GB",
           "country_name": "United Kingdom"}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def mismatches(sample: Any, ours: Any, path: str = "$", allowed_null: frozenset[str] = frozenset()) -> list[str]:
    """Where ``ours`` lacks a field of ``sample`` or gives it another type; objects and first array
    items are compared recursively."""
    if sample is None:
        return []
    if ours is None and path.rsplit(".", 1)[-1] in allowed_null:
        return []
    if json_type(sample) != json_type(ours):
        return [f"{path}: sample {json_type(sample)}, ours {json_type(ours)}"]
    if isinstance(sample, dict):
        problems = [f"{path}.{key}: missing" for key in sample if key not in ours]
        for key in sample:
            if key in ours:
                problems += mismatches(sample[key], ours[key], f"{path}.{key}", allowed_null)
        return problems
    if isinstance(sample, list) and sample and ours:
        return mismatches(merged(sample), ours[0], f"{path}[0]", allowed_null)
    return []


def merged(items: list[Any]) -> Any:
    """The sample's array items as one: a field null in any item may be null (e.g. ``product_id``
    of a custom line item)."""
    if not all(isinstance(item, dict) for item in items):
        return items[0]
    keys = dict.fromkeys(key for item in items for key in item)
    return {key: None if any(item.get(key) is None for item in items) else items[0][key] for key in keys}


def sent(state, topic: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The payload of the (one) delivery of ``topic``, as the bytes that were signed."""
    with state.session() as session:
        [body] = session.scalars(select(Delivery.payload).where(Delivery.topic == topic)).all()
    return json.loads(body)


@pytest.fixture
def fired(state) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """One payload of each topic devstore fires, from a customer with every field filled in."""
    for topic in ("CUSTOMERS_CREATE", "ORDERS_PAID", "APP_UNINSTALLED"):
        subscribe(state, "http://127.0.0.1:9/webhooks", topic=topic)
    make_discount(state, "WELCOME-10")
    with state.session() as session:
        session.add(Installation(shop=SHOP, client_id=DEVSTORE_KEY, scopes="read_customers", installed=True))
        customer = checkout.create_customer(session, SHOP, email="ada@example.com", first_name="Ada",
                                            last_name="Lovelace", phone="+442071234567", note="Likes engines",
                                            address=ADDRESS)
        checkout.place_order(session, SHOP, customer_id=customer.id, codes=["WELCOME-10"], line_items=[
            {"title": "Difference engine", "price": "120.00", "quantity": 1, "sku": "DE-1"},
            {"title": "Punch cards", "price": "2.50", "quantity": 4, "sku": "PC-80"}])
        oauth.uninstall(session, SHOP)
    return {topic: sent(state, topic) for topic in ("customers/create", "orders/paid", "app/uninstalled")}


@pytest.mark.parametrize(("sample_name", "topic"), [("webhook-customers-create.json", "customers/create"),
                                                    ("webhook-orders-paid.json", "orders/paid"),
                                                    ("webhook-app-uninstalled.json", "app/uninstalled")])
def test_payload_has_every_field_of_the_sample_with_its_type(fired, sample_name, topic):
    sample = json.loads((SAMPLES / sample_name).read_text())
    ours = fired[topic]

    assert [key for key in sample if key not in ours] == []
    problems = mismatches(sample, ours, allowed_null=frozenset(NULL_WHEN_NOT_CANCELLED))
    assert problems == [], "\n".join(problems)


def test_order_payload_lists_its_codes_and_their_applications(fired):
    order = fired["orders/paid"]

    assert order["discount_codes"] == [{"code": "WELCOME-10", "amount": "13.00", "type": "percentage"}]
    assert order["discount_applications"] == [{
        "target_type": "line_item", "type": "discount_code", "value": "10.0", "value_type": "percentage",
        "allocation_method": "across", "target_selection": "all", "code": "WELCOME-10"}]
    allocated = [float(a["amount"]) for item in order["line_items"] for a in item["discount_allocations"]]
    assert sum(allocated) == pytest.approx(13.00)
    assert (order["total_line_items_price"], order["subtotal_price"], order["total_price"]) == (
        "130.00", "117.00", "127.00")
    assert order["cancelled_at"] is None and order["cancel_reason"] is None


def test_ids_are_integers_with_matching_gids(fired):
    customer, order, shop = fired["customers/create"], fired["orders/paid"], fired["app/uninstalled"]

    assert isinstance(customer["id"], int) and customer["admin_graphql_api_id"] == f"gid://shopify/Customer/{customer['id']}"
    assert isinstance(order["id"], int) and order["admin_graphql_api_id"] == f"gid://shopify/Order/{order['id']}"
    assert order["customer"]["id"] == customer["id"]
    assert isinstance(shop["id"], int) and shop["myshopify_domain"] == SHOP
