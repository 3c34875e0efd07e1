"""The JSON control API under /_devstore/: answers, status codes and errors."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from devstore.models import Customer, Delivery, Installation, Metafield
from tests.devstore.conftest import DEVSTORE_KEY, OTHER_SHOP, SHOP
from tests.devstore.factories import make_discount, subscribe

BASE = f"/_devstore/stores/{SHOP}"


def installed(state) -> None:  # type: ignore[no-untyped-def]
    with state.session() as session:
        session.add(Installation(shop=SHOP, client_id=DEVSTORE_KEY, scopes="read_customers", installed=True,
                                 access_token="shpat_" + "a" * 32))


def test_stores_are_listed_with_their_install_state(client):
    response = client.get("/_devstore/stores")

    assert response.status_code == 200
    assert [s["domain"] for s in response.json] == [SHOP, OTHER_SHOP]
    assert response.json[0]["installation"] is None
    assert response.json[0]["bucket_size"] == 2000 and response.json[0]["restore_rate"] == 100


def test_an_unknown_store_is_a_json_404(client):
    for response in (client.get("/_devstore/stores/nowhere.myshopify.com"),
                     client.get("/_devstore/stores/nowhere.myshopify.com/customers"),
                     client.post("/_devstore/stores/nowhere.myshopify.com/orders", json={"amount": "1"}),
                     client.get("/_devstore/stores/nowhere.myshopify.com/graphql_usage"),
                     client.delete("/_devstore/stores/nowhere.myshopify.com/graphql_usage")):
        assert response.status_code == 404
        assert "nowhere" in response.json["error"]


def test_customers_are_created_and_listed_with_tags_and_metafields(client, state):
    created = client.post(f"{BASE}/customers", json={"email": "ada@example.com", "first_name": "Ada"})
    assert created.status_code == 201
    customer_id = created.json["id"]
    with state.session() as session:
        session.get(Customer, customer_id).tags = ["oncecode-welcome"]
        session.add(Metafield(id=1, shop=SHOP, owner_id=f"gid://shopify/Customer/{customer_id}", namespace="oncecode",
                              key="welcome_code", type="single_line_text_field", value="WELCOME-ABCD"))

    [listed] = client.get(f"{BASE}/customers").json

    assert listed["id"] == customer_id and listed["email"] == "ada@example.com"
    assert listed["tags"] == ["oncecode-welcome"]
    assert [(m["namespace"], m["key"], m["value"]) for m in listed["metafields"]] == [
        ("oncecode", "welcome_code", "WELCOME-ABCD")]


def test_a_taken_email_is_a_conflict(client):
    assert client.post(f"{BASE}/customers", json={"email": "ada@example.com"}).status_code == 201
    assert client.post(f"{BASE}/customers", json={"email": "ADA@example.com"}).status_code == 409


def test_an_order_with_a_code_is_placed_and_listed(client, state):
    make_discount(state, "TEN-OFF", value_type="fixed_amount", value="10", usage_limit=1)
    customer_id = client.post(f"{BASE}/customers", json={"email": "ada@example.com"}).json["id"]

    placed = client.post(f"{BASE}/orders", json={"customer_id": customer_id, "codes": ["ten-off"],
                                                 "line_items": [{"title": "Mug", "price": "12.50", "quantity": 2}]})

    assert placed.status_code == 201
    assert placed.json["name"] == "#1001"
    assert placed.json["discount_codes"] == [{"code": "ten-off", "amount": "10.00", "type": "fixed_amount"}]
    assert (placed.json["total_line_items_price"], placed.json["total_discounts"], placed.json["total_price"]) == (
        "25.00", "10.00", "25.00")
    assert [o["id"] for o in client.get(f"{BASE}/orders").json] == [placed.json["id"]]
    [discount] = client.get(f"{BASE}/discounts").json
    assert discount["codes"] == [{"code": "TEN-OFF", "usage_count": 1}] and discount["status"] == "ACTIVE"


def test_a_refused_code_is_a_conflict_naming_the_rule(client, state):
    make_discount(state, "ONCE", usage_limit=1)
    assert client.post(f"{BASE}/orders", json={"amount": "20.00", "codes": ["ONCE"]}).status_code == 201

    refused = client.post(f"{BASE}/orders", json={"amount": "20.00", "codes": ["once"]})

    assert refused.status_code == 409
    assert refused.json["rule"] == "usage_limit" and refused.json["code"] == "once"
    assert "usage limit" in refused.json["error"]


def test_malformed_orders_are_bad_requests(client):
    for body in ({}, {"amount": "-3"}, {"line_items": "Mug"}, {"amount": "1", "codes": [1]}):
        response = client.post(f"{BASE}/orders", json=body)
        assert response.status_code == 400, body
        assert response.json["error"]
    assert client.post(f"{BASE}/orders", data="not json", content_type="application/json").status_code == 400
    assert client.post(f"{BASE}/orders", json={"amount": "1", "customer_id": 42}).status_code == 404


def test_faults_are_validated_and_replaced(client):
    assert client.put(f"{BASE}/faults", json={"duplicate": True, "delay": 2.5, "drop": ["ORDERS_PAID"],
                                              "graphql_5xx": 2}).json == {
        "duplicate": True, "delay": 2.5, "drop": ["orders/paid"], "graphql_5xx": 2}
    for bad in ({"duplicate": "yes"}, {"delay": -1}, {"delay": True}, {"drop": "orders/paid"}, {"explode": 1}):
        assert client.put(f"{BASE}/faults", json=bad).status_code == 400, bad
    assert client.put(f"{BASE}/faults", json={}).json == {}
    assert client.get(BASE).json["faults"] == {}


def test_graphql_faults_are_counts_with_a_delay(client):
    faults = {"graphql_5xx": 1, "graphql_timeout": 0, "graphql_throttle": 3, "graphql_answer_lost": 2,
              "timeout_seconds": 0.3}

    assert client.put(f"{BASE}/faults", json=faults).json == faults
    assert client.get(BASE).json["faults"] == faults


@pytest.mark.parametrize("bad", [
    {"graphql_answer_lost": -1}, {"graphql_answer_lost": "2"}, {"graphql_answer_lost": True},
    {"graphql_answer_lost": 1.5}, {"graphql_answer_lost": None}, {"graphql_5xx": -1}, {"graphql_timeout": "1"},
    {"graphql_throttle": False}, {"timeout_seconds": -0.5}, {"timeout_seconds": "30"}, {"graphql_answer_los": 1},
])
def test_malformed_graphql_faults_are_bad_requests(client, bad: dict[str, Any]):
    response = client.put(f"{BASE}/faults", json=bad)

    assert response.status_code == 400
    assert next(iter(bad)) in response.json["error"]
    assert client.get(BASE).json["faults"] == {}


def test_the_plan_sets_the_bucket(client):
    assert client.put(f"{BASE}/plan", json={"plan": "plus"}).json["restore_rate"] == 1000
    custom = client.put(f"{BASE}/plan", json={"bucket_size": 50, "restore_rate": 5}).json
    assert (custom["plan"], custom["bucket_size"], custom["restore_rate"]) == ("plus", 50, 5)
    assert client.put(f"{BASE}/plan", json={"plan": "gold"}).status_code == 400
    assert client.put(f"{BASE}/plan", json={"restore_rate": 0}).status_code == 400


def test_uninstall_needs_an_installed_app_and_fires_app_uninstalled(client, state, receiver):
    assert client.post(f"{BASE}/uninstall").status_code == 409
    installed(state)
    subscribe(state, receiver.url(), topic="APP_UNINSTALLED")

    response = client.post(f"{BASE}/uninstall")

    assert response.status_code == 200
    assert response.json["installation"]["installed"] is False
    assert response.json["installation"]["access_token"] is None
    assert client.post(f"{BASE}/uninstall").status_code == 409
    assert client.get(f"{BASE}/webhook_subscriptions").json == []
    [delivery] = client.get(f"{BASE}/deliveries").json
    assert delivery["topic"] == "app/uninstalled" and delivery["status"] == "pending"
    assert delivery["payload"]["myshopify_domain"] == SHOP


def test_deliver_runs_the_stores_due_deliveries_now(client, state, receiver):
    subscribe(state, receiver.url())
    client.put(f"{BASE}/faults", json={"delay": 3600})
    client.post(f"{BASE}/customers", json={"email": "ada@example.com"})

    assert client.post(f"{BASE}/deliver").json == {"attempted": 0}
    assert client.post(f"{BASE}/deliver", json={"force": True}).json == {"attempted": 1}

    [delivery] = client.get(f"{BASE}/deliveries").json
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("delivered", 1, 200)
    assert len(receiver.requests) == 1


def test_webhook_subscriptions_are_listed(client, state):
    subscribe(state, "https://oncecode.test/webhooks", topic="ORDERS_PAID")

    [listed] = client.get(f"{BASE}/webhook_subscriptions").json

    assert (listed["topic"], listed["uri"]) == ("ORDERS_PAID", "https://oncecode.test/webhooks")
    assert listed["id"].startswith("gid://shopify/WebhookSubscription/")


def test_reset_forgets_everything(client, state):
    installed(state)
    client.post(f"{BASE}/customers", json={"email": "ada@example.com"})
    client.put(f"{BASE}/faults", json={"duplicate": True})
    buckets = client.application.extensions["devstore_admin"].buckets
    buckets.take(SHOP, 2000.0, 100.0, 1500)
    client.application.extensions["devstore_admin"].usage.add(SHOP, requests=3, points=25, throttled=1)
    assert client.get(f"{BASE}/graphql_usage").json == {"requests": 3, "points": 25, "throttled": 1}

    assert client.post("/_devstore/reset").json == {"ok": True}
    assert buckets.status(SHOP, 2000.0, 100.0).currently_available == 2000  # a full bucket again
    assert client.get(f"{BASE}/graphql_usage").json == {"requests": 0, "points": 0, "throttled": 0}

    store = client.get(BASE).json
    assert store["installation"] is None and store["faults"] == {}
    assert store["counts"] == {"customers": 0, "discounts": 0, "orders": 0, "deliveries": 0,
                               "webhook_subscriptions": 0}
    with state.session() as session:
        assert session.scalars(select(Delivery)).all() == []
