"""Cancelling and refunding an order on devstore: the store's rules, the control API, the store page,
``orders/cancelled`` and ``refunds/create`` in Shopify's shapes, delivered like every other topic."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from app.shopify import client as app_client
from devstore.models import Delivery
from devstore.webhooks import rest_topic, topic_enum
from tests.devstore.conftest import DEVSTORE_SECRET, OTHER_SHOP, SHOP
from tests.devstore.factories import make_discount, subscribe
from tests.devstore.test_admin_support import AdminApi, admin_api
from tests.devstore.test_payloads import ADDRESS, SAMPLES, merged, mismatches
from tests.helpers import webhook_signature

ORDERS = f"/_devstore/stores/{SHOP}/orders"
PAGE = f"/stores/{SHOP}"
SAMPLE_ORDER = json.loads((SAMPLES / "webhook-orders-paid.json").read_text())
# A refund's note is optional: Shopify sends null for a refund without one (a cancellation's).
MAY_BE_NULL = frozenset({"note"})


def money_set(amount: str) -> dict[str, dict[str, str]]:
    return {"shop_money": {"amount": amount, "currency_code": "USD"},
            "presentment_money": {"amount": amount, "currency_code": "USD"}}


# The documented Refund resource as a ``refunds/create`` payload carries it: the fields of Shopify's
# refunds/create sample payload (shopify.dev/docs/api/webhooks, topic refunds/create), with the values and
# JSON types of the REST Refund resource's "Create a refund" responses (shopify.dev/docs/api/admin-rest/
# 2026-01/resources/refund): e.g. a refund line item's `subtotal` and `total_tax` are numbers while every
# `*_set` amount is a string. The line item and the shipping line are those of the published orders/paid
# sample. (`additional_fees` and a transaction's `currency_exchange_adjustment` are in the REST response
# but not in webhook payloads, so they are not here.)
REFUND_SHAPE: dict[str, Any] = {
    "id": 929361483,
    "order_id": 450789469,
    "created_at": "2026-01-09T19:00:17-05:00",
    "note": "wrong size",
    "user_id": None,
    "processed_at": "2026-01-09T19:00:17-05:00",
    "duties": [],
    "total_duties_set": money_set("0.00"),
    "return": None,
    "restock": False,
    "refund_shipping_lines": [{
        "id": 623176827,
        "shipping_line_id": 369256396,
        "subtotal_amount_set": money_set("5.00"),
        "shipping_line": merged(SAMPLE_ORDER["shipping_lines"]),
    }],
    "admin_graphql_api_id": "gid://shopify/Refund/929361483",
    "order_adjustments": [{
        "id": 1030976847,
        "order_id": 450789469,
        "refund_id": 929361482,
        "amount": "-5.00",
        "tax_amount": "0.00",
        "kind": "refund_discrepancy",
        "reason": "Refund discrepancy",
        "amount_set": money_set("-5.00"),
        "tax_amount_set": money_set("0.00"),
    }],
    "refund_line_items": [{
        "location_id": None,
        "restock_type": "no_restock",
        "quantity": 1,
        "id": 1058498334,
        "line_item_id": 518995019,
        "subtotal": 0.0,
        "total_tax": 0.0,
        "subtotal_set": money_set("0.00"),
        "total_tax_set": money_set("0.00"),
        "line_item": merged(SAMPLE_ORDER["line_items"]),
    }],
    "transactions": [{
        "id": 1068278588,
        "order_id": 450789469,
        "kind": "refund",
        "gateway": "bogus",
        "status": "success",
        "message": "Bogus Gateway: Forced success",
        "created_at": "2026-01-09T19:00:17-05:00",
        "test": True,
        "authorization": None,
        "location_id": None,
        "user_id": None,
        "parent_id": 801038806,
        "processed_at": "2026-01-09T19:00:17-05:00",
        "device_id": None,
        "error_code": None,
        "source_name": "755357713",
        "receipt": {},
        "amount": "41.94",
        "currency": "USD",
        "payment_id": "c901414060.1",
        "total_unsettled_set": {"presentment_money": {"amount": "348.0", "currency": "USD"},
                                "shop_money": {"amount": "348.0", "currency": "USD"}},
        "manual_payment_gateway": False,
        "amount_rounding": None,
        "admin_graphql_api_id": "gid://shopify/OrderTransaction/1068278588",
    }],
}


# --- helpers ---------------------------------------------------------------------------------------

def place(client, amount: str = "40.00", **body: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.post(ORDERS, json={"amount": amount, **body})
    assert response.status_code == 201, response.json
    return response.json


def cancel(client, order_id: int, shop: str = SHOP, **body: Any):  # type: ignore[no-untyped-def]
    return client.post(f"/_devstore/stores/{shop}/orders/{order_id}/cancel", json=body)


def refund(client, order_id: int | str, amount: Any, shop: str = SHOP, **body: Any):  # type: ignore[no-untyped-def]
    return client.post(f"/_devstore/stores/{shop}/orders/{order_id}/refunds", json={"amount": amount, **body})


def subscribe_all(state, uri: str = "http://127.0.0.1:9/webhooks") -> None:  # type: ignore[no-untyped-def]
    for topic in ("ORDERS_PAID", "ORDERS_CANCELLED", "REFUNDS_CREATE"):
        subscribe(state, uri, topic=topic)


def logged(state) -> list[Delivery]:  # type: ignore[no-untyped-def]
    """The webhook log, oldest first."""
    with state.session() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def sent(state, topic: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [json.loads(d.payload) for d in logged(state) if d.topic == topic]


def set_faults(client, **faults: Any) -> None:  # type: ignore[no-untyped-def]
    response = client.put(f"/_devstore/stores/{SHOP}/faults", json=faults)
    assert response.status_code == 200, response.json


# --- the store's rules, through the control API -----------------------------------------------------

def test_cancelling_refunds_everything_and_fires_refunds_create_then_orders_cancelled(client, state):
    subscribe_all(state)
    order = place(client, "40.00", shipping_price="5.00")

    response = cancel(client, order["id"], reason="fraud")

    assert response.status_code == 200
    body = response.json
    assert (body["cancel_reason"], body["financial_status"]) == ("fraud", "refunded")
    assert body["cancelled_at"] is not None
    assert (body["total_refunded"], body["refundable"]) == ("45.00", "0.00")
    [made] = body["refunds"]
    assert made["amount"] == "45.00" and made["shipping"] == "5.00"
    assert [(line["quantity"], line["subtotal"], line["restock_type"]) for line in made["line_items"]] == [
        (1, "40.00", "cancel")]
    assert [d.topic for d in logged(state)] == ["orders/paid", "refunds/create", "orders/cancelled"]


def test_an_order_is_cancelled_only_once(client, state):
    subscribe_all(state)
    order = place(client)
    assert cancel(client, order["id"], reason="customer").status_code == 200

    again = cancel(client, order["id"], reason="staff")

    assert again.status_code == 409
    assert "Order #1001 is already cancelled" in again.json["error"] and "customer" in again.json["error"]
    assert [d.topic for d in logged(state)].count("orders/cancelled") == 1
    assert client.get(ORDERS).json[0]["cancel_reason"] == "customer"


def test_cancelling_with_refund_later_keeps_the_money_and_a_later_refund_still_works(client, state):
    subscribe_all(state)
    order = place(client, "40.00", shipping_price="0.00")

    body = cancel(client, order["id"], refund=False, reason="INVENTORY").json

    assert (body["financial_status"], body["cancel_reason"], body["total_refunded"]) == ("paid", "inventory", "0.00")
    assert [d.topic for d in logged(state)] == ["orders/paid", "orders/cancelled"]
    later = refund(client, order["id"], "15.00")
    assert later.status_code == 201 and later.json["order"]["financial_status"] == "partially_refunded"


def test_partial_refunds_add_up_to_refunded(client, state):
    subscribe_all(state)
    order = place(client, "40.00", shipping_price="10.00")

    first = refund(client, order["id"], "20.00", note="Scratched")
    second = refund(client, order["id"], 30)

    assert first.status_code == 201 and second.status_code == 201
    assert (first.json["amount"], first.json["note"], first.json["order"]["financial_status"]) == (
        "20.00", "Scratched", "partially_refunded")
    assert (second.json["order"]["financial_status"], second.json["order"]["refundable"]) == ("refunded", "0.00")
    assert [d.topic for d in logged(state)] == ["orders/paid", "refunds/create", "refunds/create"]


def test_a_refund_cannot_exceed_what_is_left_to_refund(client, state):
    subscribe_all(state)
    order = place(client, "40.00", shipping_price="10.00")
    refund(client, order["id"], "20.00")

    over = refund(client, order["id"], "30.01")

    assert over.status_code == 409
    assert over.json["error"] == ("A refund of 30.01 EUR is more than order #1001 has left to refund: 30.00 EUR "
                                  "(paid 50.00, refunded 20.00)")
    assert len(sent(state, "refunds/create")) == 1
    assert client.get(ORDERS).json[0]["total_refunded"] == "20.00"


def test_a_fully_refunded_order_has_nothing_left_to_refund(client, state):
    order = place(client, "40.00", shipping_price="0.00")
    cancel(client, order["id"])

    response = refund(client, order["id"], "0.01")

    assert response.status_code == 409
    assert response.json["error"] == "Order #1001 has nothing left to refund: its 40.00 EUR were all refunded"


@pytest.mark.parametrize(("amount", "words"), [
    (None, "amount is required"), ("", "amount is required"), ("0", "more than 0.00"), ("0.00", "more than 0.00"),
    ("-5", "non-negative"), ("1.005", "at most two decimals"), ("ten", "amount like 19.99"), (True, "amount"),
])
def test_a_malformed_amount_is_a_400_naming_it(client, amount, words):
    order = place(client)

    response = refund(client, order["id"], amount)

    assert response.status_code == 400 and words in response.json["error"]
    assert client.get(ORDERS).json[0]["financial_status"] == "paid"


@pytest.mark.parametrize(("body", "words"), [
    ({"reason": "bored"}, "reason must be one of customer, declined, fraud, inventory, other, staff"),
    ({"refund": "yes"}, "refund must be true or false"),
    ({"restock": 1}, "restock must be true or false"),
])
def test_a_malformed_cancellation_is_a_400_and_cancels_nothing(client, body, words):
    order = place(client)

    response = cancel(client, order["id"], **body)

    assert response.status_code == 400 and words in response.json["error"]
    assert client.get(ORDERS).json[0]["cancelled_at"] is None


def test_unknown_orders_and_stores_are_404s_and_an_id_must_be_numeric(client):
    mine = place(client)
    assert cancel(client, 12345).status_code == 404
    assert "no order 12345 on demo.myshopify.com" in cancel(client, 12345).json["error"]
    assert cancel(client, mine["id"], shop=OTHER_SHOP).status_code == 404  # another store's order
    assert refund(client, mine["id"], "1.00", shop="nowhere.myshopify.com").status_code == 404
    assert refund(client, "1001x", "1.00").status_code == 400
    assert refund(client, "1001x", "1.00").json["error"] == "order id must be an order's numeric id, not '1001x'"


def test_a_cancel_reason_defaults_to_other_and_no_restock_is_kept(client, state):
    subscribe_all(state)
    order = place(client)

    cancel(client, order["id"], restock=False)

    [payload] = sent(state, "refunds/create")
    assert payload["restock"] is False
    assert [(line["restock_type"], line["location_id"]) for line in payload["refund_line_items"]] == [
        ("no_restock", None)]
    assert sent(state, "orders/cancelled")[0]["cancel_reason"] == "other"


# --- payload shapes -------------------------------------------------------------------------------

@pytest.fixture
def refunded(client, state) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A discounted order refunded in part, then cancelled: one payload of each kind."""
    subscribe_all(state)
    make_discount(state, "TEN", value="0.1")
    customer = client.post(f"/_devstore/stores/{SHOP}/customers", json={
        "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "phone": "+442071234567",
        "note": "Likes engines", "address": ADDRESS}).json
    order = place(client, customer_id=customer["id"], codes=["TEN"], shipping_price="5.00", line_items=[
        {"title": "Lamp", "price": "30.00", "quantity": 2, "sku": "L-1"}, {"title": "Bulb", "price": "10.00",
                                                                          "quantity": 1}])
    refund(client, order["id"], "20.00", note="Arrived late")
    cancel(client, order["id"], reason="customer")
    amount_refund, cancel_refund = sent(state, "refunds/create")
    [cancelled] = sent(state, "orders/cancelled")
    return {"order": order, "amount_refund": amount_refund, "cancel_refund": cancel_refund, "cancelled": cancelled}


def test_refunds_create_has_the_documented_fields_with_their_types(refunded):
    for payload in (refunded["amount_refund"], refunded["cancel_refund"]):
        assert set(payload) == set(REFUND_SHAPE)
        problems = mismatches(REFUND_SHAPE, payload, allowed_null=MAY_BE_NULL)
        assert problems == [], "\n".join(problems)
    cancel_refund = refunded["cancel_refund"]
    assert set(cancel_refund["refund_line_items"][0]) == set(REFUND_SHAPE["refund_line_items"][0])
    assert set(cancel_refund["transactions"][0]) == set(REFUND_SHAPE["transactions"][0])
    assert set(cancel_refund["order_adjustments"][0]) == set(REFUND_SHAPE["order_adjustments"][0])
    assert set(cancel_refund["refund_shipping_lines"][0]) == set(REFUND_SHAPE["refund_shipping_lines"][0])


def test_an_amount_refund_is_one_refund_transaction_and_a_discrepancy(refunded):
    payload, order = refunded["amount_refund"], refunded["order"]

    assert payload["order_id"] == order["id"] and payload["note"] == "Arrived late"
    assert payload["admin_graphql_api_id"] == f"gid://shopify/Refund/{payload['id']}"
    [transaction] = payload["transactions"]
    assert (transaction["kind"], transaction["status"], transaction["amount"], transaction["currency"]) == (
        "refund", "success", "20.00", "EUR")
    assert transaction["order_id"] == order["id"]
    assert payload["refund_line_items"] == [] and payload["refund_shipping_lines"] == []
    [adjustment] = payload["order_adjustments"]
    assert (adjustment["kind"], adjustment["amount"], adjustment["refund_id"]) == (
        "refund_discrepancy", "-20.00", payload["id"])


def test_a_cancellation_refund_covers_every_line_and_the_shipping_and_pays_what_was_left(refunded):
    payload, order = refunded["cancel_refund"], refunded["order"]

    # 70.00 of items − 7.00 (10 %) + 5.00 shipping = 68.00 paid; 20.00 refunded before: 48.00 left
    assert payload["transactions"][0]["amount"] == "48.00"
    lines = [(line["line_item"]["title"], line["quantity"], line["subtotal"], line["subtotal_set"]["shop_money"]
              ["amount"], line["restock_type"]) for line in payload["refund_line_items"]]
    assert lines == [("Lamp", 2, 54.0, "54.00", "cancel"), ("Bulb", 1, 9.0, "9.00", "cancel")]
    [shipping] = payload["refund_shipping_lines"]
    assert shipping["subtotal_amount_set"]["shop_money"]["amount"] == "5.00"
    assert shipping["shipping_line_id"] == shipping["shipping_line"]["id"]
    # the lines cover 68.00 and 48.00 was paid back: the 20.00 refunded before is the discrepancy
    assert [a["amount"] for a in payload["order_adjustments"]] == ["20.00"]
    assert payload["restock"] is True and payload["order_id"] == order["id"]


def test_orders_cancelled_has_every_field_of_the_published_order_sample(refunded):
    ours = refunded["cancelled"]

    # the sample is itself a cancelled order, so cancelled_at and cancel_reason must be strings here
    assert [key for key in SAMPLE_ORDER if key not in ours] == []
    problems = mismatches(SAMPLE_ORDER, ours)
    assert problems == [], "\n".join(problems)


def test_orders_cancelled_shows_the_cancellation_and_the_refunds(refunded):
    ours, order = refunded["cancelled"], refunded["order"]

    assert ours["id"] == order["id"] and ours["cancel_reason"] == "customer"
    assert ours["cancelled_at"] == ours["updated_at"]
    assert ours["financial_status"] == "refunded"
    assert [r["id"] for r in ours["refunds"]] == [refunded["amount_refund"]["id"], refunded["cancel_refund"]["id"]]
    assert ours["refunds"][1] == refunded["cancel_refund"]
    for refund_payload in ours["refunds"]:
        assert mismatches(REFUND_SHAPE, refund_payload, allowed_null=MAY_BE_NULL) == []
    assert (ours["total_price"], ours["current_total_price"], ours["current_subtotal_price"],
            ours["current_total_discounts"]) == ("68.00", "0.00", "0.00", "0.00")
    assert [item["current_quantity"] for item in ours["line_items"]] == [0, 0]
    assert ours["discount_codes"] == [{"code": "TEN", "amount": "7.00", "type": "percentage"}]


def test_a_partly_refunded_order_is_current_less_the_refund(client, state):
    subscribe_all(state)
    order = place(client, "40.00", shipping_price="0.00")
    refund(client, order["id"], "15.00")

    cancel(client, order["id"], refund=False)

    [payload] = sent(state, "orders/cancelled")
    assert (payload["financial_status"], payload["current_total_price"], payload["total_price"]) == (
        "partially_refunded", "25.00", "40.00")
    assert payload["line_items"][0]["current_quantity"] == 1  # refunding an amount takes no item back


# --- deliveries ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rest", "enum"), [("orders/cancelled", "ORDERS_CANCELLED"),
                                            ("refunds/create", "REFUNDS_CREATE")])
def test_the_new_topic_names_map_both_ways(rest, enum):
    assert topic_enum(rest) == enum and rest_topic(enum) == rest


def test_both_topics_are_delivered_signed_with_shopifys_headers(client, state, deliverer, receiver):
    for topic in ("ORDERS_CANCELLED", "REFUNDS_CREATE"):
        subscribe(state, receiver.url(f"/{topic.lower()}"), topic=topic)
    order = place(client)
    cancel(client, order["id"], reason="declined")

    assert deliverer.deliver_due() == 2

    by_topic = {r.headers["X-Shopify-Topic"]: r for r in receiver.requests}
    assert set(by_topic) == {"refunds/create", "orders/cancelled"}
    rows = {d.topic: d for d in logged(state)}
    for topic, request in by_topic.items():
        headers = request.headers
        assert request.path == "/" + topic_enum(topic).lower()
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Shopify-Hmac-Sha256"] == webhook_signature(request.body, DEVSTORE_SECRET)
        assert headers["X-Shopify-Shop-Domain"] == SHOP
        assert headers["X-Shopify-Api-Version"] == "2026-10"
        assert headers["X-Shopify-Webhook-Id"] == rows[topic].webhook_id
        assert headers["X-Shopify-Event-Id"] == rows[topic].event_id
        assert headers["X-Shopify-Triggered-At"].endswith("Z")
        assert rows[topic].status == "delivered"
    assert json.loads(by_topic["orders/cancelled"].body)["cancel_reason"] == "declined"
    assert json.loads(by_topic["refunds/create"].body)["order_id"] == order["id"]
    assert by_topic["refunds/create"].headers["X-Shopify-Event-Id"] != by_topic["orders/cancelled"].headers[
        "X-Shopify-Event-Id"]


def test_nothing_is_sent_to_an_app_that_did_not_subscribe(client, state):
    subscribe(state, "http://127.0.0.1:9/webhooks", topic="ORDERS_PAID")
    order = place(client)

    refund(client, order["id"], "5.00")
    cancel(client, order["id"])

    assert [d.topic for d in logged(state)] == ["orders/paid"]


def test_each_topic_needs_its_own_subscription(client, state):
    subscribe(state, "http://127.0.0.1:9/webhooks", topic="ORDERS_CANCELLED")
    order = place(client)

    cancel(client, order["id"])

    assert [d.topic for d in logged(state)] == ["orders/cancelled"]


def test_the_drop_fault_drops_the_named_topics_only(client, state, deliverer, receiver):
    for topic in ("ORDERS_CANCELLED", "REFUNDS_CREATE"):
        subscribe(state, receiver.url(), topic=topic)
    set_faults(client, drop=["ORDERS_CANCELLED"])
    order = place(client)

    cancel(client, order["id"])
    deliverer.deliver_due()

    assert {d.topic: d.status for d in logged(state)} == {"refunds/create": "delivered",
                                                          "orders/cancelled": "dropped"}
    assert [r.headers["X-Shopify-Topic"] for r in receiver.requests] == ["refunds/create"]


def test_drop_everything_drops_refunds_too(client, state, deliverer, receiver):
    subscribe(state, receiver.url(), topic="REFUNDS_CREATE")
    set_faults(client, drop=True)
    order = place(client)

    refund(client, order["id"], "1.00")
    deliverer.deliver_due()

    assert [(d.topic, d.status) for d in logged(state)] == [("refunds/create", "dropped")]
    assert receiver.requests == []


# --- the Admin API: subscriptions and the order's state ----------------------------------------------

@pytest.fixture
def api() -> Iterator[AdminApi]:
    yield from admin_api()


@pytest.mark.parametrize("topic", ["ORDERS_CANCELLED", "REFUNDS_CREATE"])
def test_the_app_can_subscribe_to_the_topics_with_its_own_document(api: AdminApi, topic: str):
    created = api.data(app_client.document("webhookSubscriptionCreate"),
                       {"topic": topic, "webhookSubscription": {"uri": "https://oncecode.test/webhooks"}})
    payload = created["webhookSubscriptionCreate"]
    assert payload["userErrors"] == [] and payload["webhookSubscription"]["topic"] == topic
    order_id = api.order(price="30.00")

    api.http.post(f"/_devstore/stores/{SHOP}/orders/{order_id}/cancel", json={})

    assert [d.topic for d in logged(api.state)] == [rest_topic(topic)]
    assert logged(api.state)[0].uri == "https://oncecode.test/webhooks"


ORDER_STATE = """
query o($id: ID!) {
  order(id: $id) {
    cancelledAt displayFinancialStatus refundable
    totalRefundedSet { shopMoney { amount currencyCode } }
    currentTotalPriceSet { shopMoney { amount } }
    totalPriceSet { shopMoney { amount } }
  }
}
"""


def test_the_order_shows_its_cancellation_and_refunds_in_graphql(api: AdminApi):
    order_id = api.order(price="30.00")  # + 10.00 shipping
    gid = f"gid://shopify/Order/{order_id}"
    fresh = api.data(ORDER_STATE, {"id": gid})["order"]
    assert (fresh["cancelledAt"], fresh["displayFinancialStatus"], fresh["refundable"]) == (None, "PAID", True)

    api.http.post(f"/_devstore/stores/{SHOP}/orders/{order_id}/refunds", json={"amount": "15.00"})
    partly = api.data(ORDER_STATE, {"id": gid})["order"]
    assert partly["displayFinancialStatus"] == "PARTIALLY_REFUNDED"
    assert partly["totalRefundedSet"]["shopMoney"] == {"amount": "15.0", "currencyCode": "EUR"}
    assert partly["currentTotalPriceSet"]["shopMoney"]["amount"] == "25.0"

    cancelled_at = api.http.post(f"/_devstore/stores/{SHOP}/orders/{order_id}/cancel", json={}).json["cancelled_at"]
    done = api.data(ORDER_STATE, {"id": gid})["order"]
    assert done["cancelledAt"] == cancelled_at.replace("+00:00", "Z")
    assert (done["displayFinancialStatus"], done["refundable"]) == ("REFUNDED", False)
    assert done["totalRefundedSet"]["shopMoney"]["amount"] == done["totalPriceSet"]["shopMoney"]["amount"] == "40.0"


# --- the store page --------------------------------------------------------------------------------

def test_an_order_on_the_page_has_cancel_and_refund_buttons(client):
    order = place(client)

    page = client.get(PAGE).text

    assert f'action="{PAGE}/orders/{order["id"]}/cancel"' in page and "Cancel order" in page
    assert f'action="{PAGE}/orders/{order["id"]}/refund"' in page and "Amount (up to 50.00)" in page
    assert '<option value="fraud">fraud</option>' in page


def test_the_cancel_button_cancels_refunds_and_says_so(client, state):
    subscribe_all(state)
    order = place(client)

    response = client.post(f"{PAGE}/orders/{order['id']}/cancel", data={"reason": "fraud", "refund": "now"})

    assert response.status_code == 303 and response.headers["Location"] == PAGE
    page = client.get(PAGE).text
    assert ("Order #1001 cancelled (fraud): refunded 50.00 EUR, refunds/create and orders/cancelled fired."
            in page)
    assert "cancelled</span> fraud" in page and "refund −50.00" in page
    assert "Cancel order" not in page and "Amount (up to" not in page  # nothing left to do
    assert [d.topic for d in logged(state)][-2:] == ["refunds/create", "orders/cancelled"]


def test_the_cancel_button_can_leave_the_refund_for_later(client):
    order = place(client)

    client.post(f"{PAGE}/orders/{order['id']}/cancel", data={"reason": "customer", "refund": "later"})

    page = client.get(PAGE).text
    assert "Order #1001 cancelled (customer): orders/cancelled fired." in page
    assert "Amount (up to 50.00)" in page  # still refundable later
    assert client.get(ORDERS).json[0]["financial_status"] == "paid"


def test_cancelling_twice_from_the_page_is_explained(client):
    order = place(client)
    client.post(f"{PAGE}/orders/{order['id']}/cancel", data={"reason": "customer", "refund": "later"})

    client.post(f"{PAGE}/orders/{order['id']}/cancel", data={"reason": "staff"})

    assert "Order not cancelled: Order #1001 is already cancelled" in client.get(PAGE).text


def test_the_refund_button_refunds_an_amount(client, state):
    subscribe_all(state)
    order = place(client)

    response = client.post(f"{PAGE}/orders/{order['id']}/refund", data={"amount": "12.50", "note": "Dented"})

    assert response.status_code == 303
    page = client.get(PAGE).text
    assert "Refunded 12.50 EUR on order #1001 (now partially_refunded); refunds/create fired." in page
    assert "refund −12.50" in page and "Dented" in page and "Amount (up to 37.50)" in page
    assert sent(state, "refunds/create")[0]["transactions"][0]["amount"] == "12.50"


@pytest.mark.parametrize(("amount", "words"), [
    ("60.00", "A refund of 60.00 EUR is more than order #1001 has left to refund: 50.00 EUR"),
    ("", "amount is required"),
    ("abc", "amount must be an amount like 19.99"),
])
def test_a_refused_refund_from_the_page_is_explained(client, amount, words):
    order = place(client)

    client.post(f"{PAGE}/orders/{order['id']}/refund", data={"amount": amount})

    page = client.get(PAGE).text
    assert "Refund refused: " + words in page
    assert client.get(ORDERS).json[0]["financial_status"] == "paid"


def test_buttons_for_an_unknown_order_or_store(client):
    client.post(f"{PAGE}/orders/999/refund", data={"amount": "1.00"})
    assert "Refund refused: no order 999 on demo.myshopify.com" in client.get(PAGE).text
    assert client.post("/stores/nowhere.myshopify.com/orders/1/cancel", data={}).status_code == 404


# --- an older state file ---------------------------------------------------------------------------

def test_a_state_file_from_before_cancellations_starts_afresh_instead_of_failing(make_devstore, tmp_path, caplog):
    path = tmp_path / "devstore.db"
    with sqlite3.connect(path) as old:  # an orders table as devstore wrote it before orders could be cancelled
        old.execute("CREATE TABLE orders (id BIGINT PRIMARY KEY, shop VARCHAR(255), number INTEGER)")
        old.execute("INSERT INTO orders VALUES (1, 'demo.myshopify.com', 1001)")

    with caplog.at_level(logging.WARNING, logger="devstore.state"):
        client = make_devstore(database_url=f"sqlite:///{path}").test_client()

    assert "predates this devstore's tables" in caplog.text
    assert client.get(ORDERS).json == []
    order = place(client)
    assert cancel(client, order["id"]).json["financial_status"] == "refunded"


def test_a_current_state_file_is_kept(make_devstore, tmp_path):
    url = f"sqlite:///{tmp_path / 'devstore.db'}"
    first = make_devstore(database_url=url).test_client()
    order = place(first)
    refund(first, order["id"], "5.00")

    again = make_devstore(database_url=url).test_client()

    [kept] = again.get(ORDERS).json
    assert (kept["id"], kept["total_refunded"]) == (order["id"], "5.00")
