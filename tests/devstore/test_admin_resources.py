"""Customers, orders, the shop, metafields, tags and webhook subscriptions through devstore's Admin API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from devstore.models import Installation, Metafield, Order
from tests.devstore.test_admin_support import (
    CLIENT_ID,
    SHOP,
    AdminApi,
    admin_api,
)


@pytest.fixture
def api() -> Iterator[AdminApi]:
    yield from admin_api()

SET = """
mutation set($m: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $m) {
    metafields { id key namespace type value createdAt updatedAt ownerType compareDigest }
    userErrors { field message code elementIndex }
  }
}
"""
DEFINE = """
mutation define($d: MetafieldDefinitionInput!) {
  metafieldDefinitionCreate(definition: $d) {
    createdDefinition { id name namespace key description ownerType type { name category } pinnedPosition
                        access { admin storefront customerAccount } }
    userErrors { field message code }
  }
}
"""
TAGS_ADD = ("mutation t($id: ID!, $tags: [String!]!) "
            "{ tagsAdd(id: $id, tags: $tags) { node { id } userErrors { field message } } }")
APP_NS = f"app--{CLIENT_ID}"


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def field_input(owner: str, **changes: Any) -> dict[str, Any]:
    values = {"ownerId": owner, "namespace": "$app:welcome", "key": "code", "type": "single_line_text_field",
              "value": "WELCOME-7QX2KD"}
    values.update(changes)
    return values


def metafield_count(api: AdminApi) -> int:
    with api.state.session() as session:
        return session.scalar(select(func.count()).select_from(Metafield)) or 0


# --- metafieldsSet ----------------------------------------------------------------------------------

def test_metafields_set_resolves_app_namespaces_and_upserts(api: AdminApi):
    owner = gid("Customer", api.customer("ann@example.com"))
    first = api.data(SET, {"m": [field_input(owner), field_input(owner, namespace="$app", key="issued")]})
    created = first["metafieldsSet"]["metafields"]
    assert first["metafieldsSet"]["userErrors"] == []
    assert [(m["namespace"], m["key"]) for m in created] == [(f"{APP_NS}--welcome", "code"), (APP_NS, "issued")]
    assert created[0]["ownerType"] == "CUSTOMER"
    again = api.data(SET, {"m": [field_input(owner, value="WELCOME-NEW")]})["metafieldsSet"]["metafields"][0]
    assert again["id"] == created[0]["id"] and again["value"] == "WELCOME-NEW"
    assert again["createdAt"] == created[0]["createdAt"]
    assert metafield_count(api) == 2


def test_the_docs_sample_shape_on_a_customer(api: AdminApi):
    owner = gid("Customer", api.customer("sample@example.com"))
    body = api.data(SET, {"m": [{"key": "example_key", "namespace": "example_namespace", "ownerId": owner,
                                 "type": "single_line_text_field", "value": "Example Value"}]})
    [field] = body["metafieldsSet"]["metafields"]
    assert (field["key"], field["namespace"], field["value"]) == ("example_key", "example_namespace", "Example Value")
    assert field["createdAt"].endswith("Z") and field["createdAt"] == field["updatedAt"]


def test_metafields_set_is_atomic(api: AdminApi):
    owner = gid("Customer", api.customer("ann@example.com"))
    body = api.data(SET, {"m": [field_input(owner), field_input(owner, key="count", type="number_integer",
                                                                value="three")]})
    assert body["metafieldsSet"]["metafields"] == []
    assert body["metafieldsSet"]["userErrors"] == [{"field": ["metafields", "1", "value"], "code": "INVALID_VALUE",
                                                    "message": "Value must be an integer.", "elementIndex": None}]
    assert metafield_count(api) == 0


def test_metafields_set_takes_at_most_25(api: AdminApi):
    owner = gid("Customer", api.customer("ann@example.com"))
    body = api.data(SET, {"m": [field_input(owner, key=f"k{i}") for i in range(26)]})
    assert body["metafieldsSet"] == {"metafields": None, "userErrors": [{
        "field": ["metafields"], "code": "LESS_THAN_OR_EQUAL_TO",
        "message": "Exceeded the maximum metafields input limit of 25.", "elementIndex": None}]}


@pytest.mark.parametrize(("changes", "field", "code"), [
    ({"ownerId": "gid://shopify/Customer/404"}, ["metafields", "0", "ownerId"], "INVALID"),
    ({"ownerId": "gid://shopify/Product/1"}, ["metafields", "0", "ownerId"], "INVALID"),
    ({"type": None}, ["metafields", "0", "type"], "BLANK"),
    ({"type": "text"}, ["metafields", "0", "type"], "INVALID_TYPE"),
    ({"key": "k"}, ["metafields", "0", "key"], "TOO_SHORT"),
    ({"key": "bad key!"}, ["metafields", "0", "key"], "INVALID"),
    ({"namespace": "ab"}, ["metafields", "0", "namespace"], "TOO_SHORT"),
    ({"namespace": "app--someone-else"}, ["metafields", "0"], "APP_NOT_AUTHORIZED"),
    ({"value": ""}, ["metafields", "0", "value"], "BLANK"),
    ({"value": "two\nlines"}, ["metafields", "0", "value"], "INVALID_VALUE"),
    ({"type": "json", "value": "{not json"}, ["metafields", "0", "value"], "INVALID_VALUE"),
    ({"type": "date_time", "value": "tomorrow"}, ["metafields", "0", "value"], "INVALID_VALUE"),
    ({"type": "url", "value": "not a url"}, ["metafields", "0", "value"], "INVALID_VALUE"),
    ({"compareDigest": "stale"}, ["metafields", "0"], "STALE_OBJECT"),
], ids=["unknown-owner", "not-an-owner", "no-type", "unknown-type", "short-key", "bad-key", "short-namespace",
        "other-app", "blank-value", "two-lines", "bad-json", "bad-date-time", "bad-url", "stale-digest"])
def test_metafields_set_user_errors(api: AdminApi, changes: dict[str, Any], field: list[str], code: str):
    owner = gid("Customer", api.customer("ann@example.com"))
    errors = api.data(SET, {"m": [field_input(owner, **changes)]})["metafieldsSet"]["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [(field, code)]
    assert metafield_count(api) == 0


def test_compare_digest_guards_a_concurrent_change(api: AdminApi):
    owner = gid("Customer", api.customer("ann@example.com"))
    digest = api.data(SET, {"m": [field_input(owner)]})["metafieldsSet"]["metafields"][0]["compareDigest"]
    ok = api.data(SET, {"m": [field_input(owner, value="B", compareDigest=digest)]})["metafieldsSet"]
    assert ok["userErrors"] == []
    stale = api.data(SET, {"m": [field_input(owner, value="C", compareDigest=digest)]})["metafieldsSet"]
    assert stale["userErrors"][0]["code"] == "STALE_OBJECT"


def test_type_may_be_omitted_when_a_definition_exists(api: AdminApi):
    owner = gid("Customer", api.customer("ann@example.com"))
    api.data(DEFINE, {"d": {"name": "Welcome code", "namespace": "$app:welcome", "key": "code",
                            "type": "single_line_text_field", "ownerType": "CUSTOMER"}})
    body = api.data(SET, {"m": [field_input(owner, type=None)]})["metafieldsSet"]
    assert body["userErrors"] == []
    assert body["metafields"][0]["type"] == "single_line_text_field"
    wrong = api.data(SET, {"m": [field_input(owner, type="number_integer", value="1")]})["metafieldsSet"]
    assert wrong["userErrors"][0]["code"] == "INVALID_TYPE"


def grant(api: AdminApi, *scopes: str) -> None:
    with api.state.session() as session:
        installation = session.scalars(select(Installation).where(Installation.shop == SHOP)).one()
        installation.scopes = ",".join([installation.scopes, *scopes])


def test_order_metafields_need_write_orders(api: AdminApi):
    order = gid("Order", api.order())
    errors = api.data(SET, {"m": [field_input(order)]})["metafieldsSet"]["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [(["metafields", "0", "ownerId"], "APP_NOT_AUTHORIZED")]
    assert "`write_orders`" in errors[0]["message"]


def test_metafields_on_orders_and_the_shop(api: AdminApi):
    grant(api, "write_orders")
    order = gid("Order", api.order())
    shop_id = api.data("{ shop { id } }")["shop"]["id"]
    body = api.data(SET, {"m": [field_input(order), field_input(shop_id)]})["metafieldsSet"]
    assert [m["ownerType"] for m in body["metafields"]] == ["ORDER", "SHOP"]
    read = api.data('{ shop { metafield(namespace: "$app:welcome", key: "code") { value } } }')
    assert read["shop"]["metafield"] == {"value": "WELCOME-7QX2KD"}


# --- metafieldDefinitionCreate ----------------------------------------------------------------------

def test_metafield_definition_create_and_taken(api: AdminApi):
    definition = {"name": "Welcome code", "namespace": "$app:welcome", "key": "code", "description": "Your code",
                  "type": "single_line_text_field", "ownerType": "CUSTOMER", "pin": True,
                  "access": {"admin": "MERCHANT_READ", "storefront": "PUBLIC_READ"}}
    created = api.data(DEFINE, {"d": definition})["metafieldDefinitionCreate"]
    assert created["userErrors"] == []
    row = created["createdDefinition"]
    assert row["id"].startswith("gid://shopify/MetafieldDefinition/")
    assert {k: row[k] for k in ("name", "namespace", "key", "description", "ownerType", "type", "pinnedPosition",
                                "access")} == {
        "name": "Welcome code", "namespace": f"{APP_NS}--welcome", "key": "code", "description": "Your code",
        "ownerType": "CUSTOMER", "type": {"name": "single_line_text_field", "category": "TEXT"}, "pinnedPosition": 1,
        "access": {"admin": "MERCHANT_READ", "storefront": "PUBLIC_READ", "customerAccount": "NONE"}}
    again = api.data(DEFINE, {"d": definition})["metafieldDefinitionCreate"]
    assert again == {"createdDefinition": None, "userErrors": [{
        "field": ["definition", "key"], "code": "TAKEN",
        "message": f"Key is in use for Customer metafields on the '{APP_NS}--welcome' namespace."}]}


@pytest.mark.parametrize(("changes", "code"), [
    ({"name": " "}, "BLANK"),
    ({"type": "text"}, "INCLUSION"),
    ({"key": "x"}, "TOO_SHORT"),
    ({"key": "no spaces"}, "INVALID_CHARACTER"),
    ({"namespace": "custom", "access": {"admin": "MERCHANT_READ"}}, "ADMIN_ACCESS_INPUT_NOT_ALLOWED"),
])
def test_metafield_definition_user_errors(api: AdminApi, changes: dict[str, Any], code: str):
    definition = {"name": "Welcome code", "namespace": "$app:welcome", "key": "code",
                  "type": "single_line_text_field", "ownerType": "CUSTOMER", **changes}
    errors = api.data(DEFINE, {"d": definition})["metafieldDefinitionCreate"]["userErrors"]
    assert [e["code"] for e in errors] == [code]


# --- tags -------------------------------------------------------------------------------------------

def test_tags_add_as_in_the_docs_sample(api: AdminApi):
    customer = gid("Customer", api.customer("ann@example.com"))
    body = api.data(TAGS_ADD, {"id": customer, "tags": "one, two, three"})  # a string, as the sample sends
    assert body == {"tagsAdd": {"node": {"id": customer}, "userErrors": []}}
    api.data(TAGS_ADD, {"id": customer, "tags": ["TWO", "four"]})
    tags = api.data('query($id: ID!) { customer(id: $id) { tags } }', {"id": customer})["customer"]["tags"]
    assert tags == ["one", "two", "three", "four"]


def test_tags_on_an_order_need_write_orders(api: AdminApi):
    order = gid("Order", api.order())
    body = api.body(TAGS_ADD, {"id": order, "tags": ["x"]})
    assert body["data"] == {"tagsAdd": None}
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"


def test_tags_add_on_an_order_and_tags_remove(api: AdminApi):
    grant(api, "write_orders")
    order = gid("Order", api.order())
    api.data(TAGS_ADD, {"id": order, "tags": ["reconciled", "welcome"]})
    removed = api.data('mutation($id: ID!) { tagsRemove(id: $id, tags: ["WELCOME"]) { node { id } userErrors '
                       "{ message } } }", {"id": order})
    assert removed["tagsRemove"]["userErrors"] == []
    assert api.data('query($id: ID!) { order(id: $id) { tags } }', {"id": order})["order"]["tags"] == ["reconciled"]


@pytest.mark.parametrize(("target", "message"), [
    ("gid://shopify/Product/12345", "Product does not exist"),
    ("gid://shopify/Customer/404", "Customer does not exist"),
])
def test_tags_add_on_something_missing(api: AdminApi, target: str, message: str):
    body = api.data(TAGS_ADD, {"id": target, "tags": ["x"]})
    assert body == {"tagsAdd": {"node": None, "userErrors": [{"field": ["id"], "message": message}]}}


def test_a_malformed_id_is_a_field_error(api: AdminApi):
    body = api.body(TAGS_ADD, {"id": "customer-1", "tags": ["x"]})
    assert body["errors"][0]["message"] == "Invalid global id 'customer-1'"


# --- customers, orders, shop ------------------------------------------------------------------------

def test_customer_fields(api: AdminApi):
    customer = api.customer("ann@example.com", first_name="Ann", last_name="Lee")
    owner = gid("Customer", customer)
    api.data(SET, {"m": [field_input(owner)]})
    api.data(TAGS_ADD, {"id": owner, "tags": ["welcome-code-issued"]})
    api.order(customer_id=customer)
    body = api.data("""query($id: ID!) { customer(id: $id) {
        id legacyResourceId email firstName lastName displayName tags numberOfOrders createdAt updatedAt
        metafield(namespace: "$app:welcome", key: "code") { value type }
        metafields(first: 5) { edges { cursor node { key namespace } } pageInfo { hasNextPage } }
        orders(first: 5) { nodes { name } } lastOrder { name } } }""", {"id": owner})["customer"]
    assert body["id"] == owner and body["legacyResourceId"] == str(customer)
    assert (body["email"], body["displayName"], body["tags"]) == ("ann@example.com", "Ann Lee", ["welcome-code-issued"])
    assert body["numberOfOrders"] == "1" and body["orders"]["nodes"] == [{"name": "#1001"}]
    assert body["lastOrder"] == {"name": "#1001"}
    assert body["metafield"] == {"value": "WELCOME-7QX2KD", "type": "single_line_text_field"}
    assert [e["node"] for e in body["metafields"]["edges"]] == [{"key": "code", "namespace": f"{APP_NS}--welcome"}]
    assert api.data('{ customer(id: "gid://shopify/Customer/404") { id } }')["customer"] is None


def test_order_fields(api: AdminApi):
    customer = api.customer("ann@example.com")
    order = api.order(customer_id=customer, price="100.00")
    body = api.data("""query($id: ID!) { order(id: $id) {
        id name createdAt updatedAt processedAt discountCodes displayFinancialStatus customer { id } email
        subtotalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount } }
        totalPriceSet { shopMoney { amount currencyCode } } totalDiscountsSet { shopMoney { amount } }
        totalShippingPriceSet { shopMoney { amount } } fullyPaid unpaid subtotalLineItemsQuantity } }""",
                    {"id": gid("Order", order)})["order"]
    assert body["name"] == "#1001" and body["displayFinancialStatus"] == "PAID"
    assert body["customer"] == {"id": gid("Customer", customer)}
    assert body["subtotalPriceSet"] == {"shopMoney": {"amount": "100.0", "currencyCode": "EUR"},
                                        "presentmentMoney": {"amount": "100.0"}}
    assert body["totalPriceSet"]["shopMoney"] == {"amount": "110.0", "currencyCode": "EUR"}  # 10.00 shipping
    assert (body["fullyPaid"], body["unpaid"], body["subtotalLineItemsQuantity"]) == (True, False, 1)


def orders_page(api: AdminApi, query: str | None = None, **args: Any) -> dict[str, Any]:
    arguments = ", ".join(f"{k}: {v}" for k, v in args.items())
    return api.data("query($q: String) { orders(" + arguments + ", query: $q) { edges { cursor node { name } } "
                    "pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", {"q": query})["orders"]


def test_orders_catch_up_by_updated_at_paginated(api: AdminApi):
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for day in range(5):
        api.order(at=start + timedelta(days=day))
    with api.state.session() as session:  # the fifth is not paid
        session.scalars(select(Order).where(Order.number == 1005)).one().financial_status = "pending"
    query = "updated_at:>'2026-11-02T00:00:00Z' financial_status:paid"
    first = orders_page(api, query, first=2, sortKey="UPDATED_AT")
    assert [e["node"]["name"] for e in first["edges"]] == ["#1003", "#1004"]
    assert first["pageInfo"]["hasNextPage"] is False
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]
    everything = orders_page(api, "updated_at:>='2026-11-02T00:00:00Z'", first=2, sortKey="UPDATED_AT")
    assert [e["node"]["name"] for e in everything["edges"]] == ["#1002", "#1003"]
    rest = orders_page(api, "updated_at:>='2026-11-02T00:00:00Z'", first=2, sortKey="UPDATED_AT",
                       after=f'"{everything["pageInfo"]["endCursor"]}"')
    assert [e["node"]["name"] for e in rest["edges"]] == ["#1004", "#1005"]
    assert (rest["pageInfo"]["hasNextPage"], rest["pageInfo"]["hasPreviousPage"]) == (False, True)
    back = orders_page(api, None, last=2, before=f'"{rest["pageInfo"]["startCursor"]}"', sortKey="UPDATED_AT")
    assert [e["node"]["name"] for e in back["edges"]] == ["#1002", "#1003"]
    newest = orders_page(api, None, first=1, sortKey="PROCESSED_AT", reverse="true")
    assert newest["edges"][0]["node"]["name"] == "#1005"
    count = api.data('{ ordersCount(query: "financial_status:paid", limit: 2) { count precision } }')
    assert count["ordersCount"] == {"count": 2, "precision": "AT_LEAST"}


@pytest.mark.parametrize("query", ["updated_at:>'yesterday'", "status:open", "-financial_status:paid",
                                   "financial_status:paid OR financial_status:pending", "free text"])
def test_order_searches_devstore_cannot_answer_exactly_are_refused(api: AdminApi, query: str):
    body = api.body('query($q: String) { orders(first: 5, query: $q) { nodes { id } } }', {"q": query})
    assert body["data"] is None
    assert body["errors"][0]["path"] == ["orders"]


def test_an_invalid_cursor_is_refused(api: AdminApi):
    body = api.body('{ orders(first: 5, after: "bm90IGEgY3Vyc29y") { nodes { id } } }')
    assert "Invalid cursor" in body["errors"][0]["message"]


def test_shop_fields(api: AdminApi):
    shop = api.data("{ shop { id name email contactEmail myshopifyDomain currencyCode enabledPresentmentCurrencies "
                    "orderNumberFormatPrefix } }")["shop"]
    assert shop["id"].startswith("gid://shopify/Shop/")
    assert {k: v for k, v in shop.items() if k != "id"} == {
        "name": "Demo", "email": "owner@example.com", "contactEmail": "owner@example.com",
        "myshopifyDomain": SHOP, "currencyCode": "EUR", "enabledPresentmentCurrencies": ["EUR"],
        "orderNumberFormatPrefix": "#"}


def test_node_and_nodes(api: AdminApi):
    customer = gid("Customer", api.customer("ann@example.com"))
    order = gid("Order", api.order())
    body = api.data("query($ids: [ID!]!) { nodes(ids: $ids) { __typename id ... on Customer { email } "
                    "... on Order { name } } }", {"ids": [customer, order, "gid://shopify/Customer/404"]})
    assert body["nodes"] == [{"__typename": "Customer", "id": customer, "email": "ann@example.com"},
                             {"__typename": "Order", "id": order, "name": "#1001"}, None]
    assert api.data("query($id: ID!) { node(id: $id) { id } }", {"id": order})["node"] == {"id": order}


def test_customers_list(api: AdminApi):
    for name in ("a", "b", "c"):
        api.customer(f"{name}@example.com")
    page = api.data("{ customers(first: 2, sortKey: CREATED_AT) { nodes { email } pageInfo { hasNextPage } } "
                    "customersCount { count precision } }")
    assert page["customers"]["pageInfo"]["hasNextPage"] is True
    assert page["customersCount"] == {"count": 3, "precision": "EXACT"}


# --- webhook subscriptions --------------------------------------------------------------------------

CREATE_HOOK = """
mutation webhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic uri format createdAt includeFields filter }
    userErrors { field message }
  }
}
"""


def subscribe(api: AdminApi, topic: str = "APP_UNINSTALLED", uri: str = "https://example.org/endpoint") -> dict:
    return api.data(CREATE_HOOK, {"topic": topic, "webhookSubscription": {"uri": uri}})["webhookSubscriptionCreate"]


def test_webhook_subscription_create_as_in_the_docs_sample(api: AdminApi):
    payload = subscribe(api)
    assert payload["userErrors"] == []
    hook = payload["webhookSubscription"]
    assert hook["id"].startswith("gid://shopify/WebhookSubscription/")
    assert (hook["topic"], hook["uri"], hook["format"], hook["includeFields"], hook["filter"]) == (
        "APP_UNINSTALLED", "https://example.org/endpoint", "JSON", [], None)


@pytest.mark.parametrize(("uri", "extra", "message"), [
    ("https://example.org/endpoint", {}, "Address for this topic has already been taken"),
    ("", {}, "Address can't be blank"),
    ("ftp://example.org/x", {}, "Address is invalid"),
    ("pubsub://project:topic", {}, "devstore does not support Pub/Sub or EventBridge addresses"),
    ("https://example.org/other", {"format": "XML"}, "devstore does not support XML webhooks"),
    ("https://example.org/other", {"includeFields": ["id"]}, "devstore does not support `includeFields`"),
])
def test_webhook_subscription_create_refusals(api: AdminApi, uri: str, extra: dict[str, Any], message: str):
    subscribe(api)
    payload = api.data(CREATE_HOOK, {"topic": "APP_UNINSTALLED", "webhookSubscription": {"uri": uri, **extra}})
    assert payload["webhookSubscriptionCreate"]["webhookSubscription"] is None
    assert payload["webhookSubscriptionCreate"]["userErrors"][0]["message"].startswith(message)


def test_http_addresses_are_accepted_for_local_apps(api: AdminApi):
    assert subscribe(api, uri="http://127.0.0.1:5000/webhooks")["userErrors"] == []


def test_webhook_subscriptions_filter_paginate_update_delete(api: AdminApi):
    ids = [subscribe(api, topic, uri)["webhookSubscription"]["id"] for topic, uri in (
        ("APP_UNINSTALLED", "https://a.test/h"), ("CUSTOMERS_CREATE", "https://a.test/h"),
        ("ORDERS_PAID", "https://b.test/h"))]
    listed = api.data("""{ webhookSubscriptions(first: 2) { edges { cursor node { topic } }
                          nodes { id } pageInfo { hasNextPage endCursor } } }""")["webhookSubscriptions"]
    assert [n["id"] for n in listed["nodes"]] == ids[:2] and listed["pageInfo"]["hasNextPage"] is True
    by_uri = api.data('{ webhookSubscriptions(first: 5, uri: "https://a.test/h", topics: [CUSTOMERS_CREATE]) '
                      "{ nodes { topic } } }")
    assert by_uri["webhookSubscriptions"]["nodes"] == [{"topic": "CUSTOMERS_CREATE"}]
    counted = api.data("{ webhookSubscriptionsCount { count precision } }")
    assert counted["webhookSubscriptionsCount"] == {"count": 3, "precision": "EXACT"}
    one = api.data("query($id: ID!) { webhookSubscription(id: $id) { uri } }", {"id": ids[2]})
    assert one["webhookSubscription"] == {"uri": "https://b.test/h"}
    moved = api.data('mutation($id: ID!) { webhookSubscriptionUpdate(id: $id, webhookSubscription: '
                     '{uri: "https://a.test/h"}) { webhookSubscription { uri topic } userErrors { message } } }',
                     {"id": ids[2]})["webhookSubscriptionUpdate"]
    assert moved == {"webhookSubscription": {"uri": "https://a.test/h", "topic": "ORDERS_PAID"}, "userErrors": []}
    gone = api.data("mutation($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId "
                    "userErrors { message } } }", {"id": ids[0]})["webhookSubscriptionDelete"]
    assert gone == {"deletedWebhookSubscriptionId": ids[0], "userErrors": []}
    missing = api.data("mutation($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId "
                       "userErrors { field message } } }", {"id": ids[0]})["webhookSubscriptionDelete"]
    assert missing == {"deletedWebhookSubscriptionId": None,
                       "userErrors": [{"field": ["id"], "message": "Webhook subscription does not exist"}]}


def test_a_store_never_sees_another_stores_rows(api: AdminApi):
    from tests.devstore.test_admin_support import install
    install(api.state, "other.myshopify.com", token="shpat_other")
    customer = gid("Customer", api.customer("ann@example.com"))
    hook = subscribe(api)["webhookSubscription"]["id"]
    other = {"token": "shpat_other", "shop": "other.myshopify.com"}
    assert api.data("query($id: ID!) { customer(id: $id) { id } }", {"id": customer}, **other)["customer"] is None
    assert api.data("query($id: ID!) { webhookSubscription(id: $id) { id } }", {"id": hook},
                    **other)["webhookSubscription"] is None
    assert api.data(TAGS_ADD, {"id": customer, "tags": ["x"]}, **other)["tagsAdd"]["node"] is None
