"""Cost calculation, the leaky bucket, usage counters, and a check that every field devstore declares answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import graphql
import pytest

from devstore.admin.bucket import Buckets
from devstore.admin.cost import CostCalculator
from devstore.admin.objects import PLAIN_TYPES, VIEWS, implemented, returnable, view_fields
from devstore.admin.schema import admin_schema
from devstore.admin.usage import Usage
from devstore.admin.walk import is_connection
from tests.devstore.test_admin_support import OTHER_SHOP, SHOP, AdminApi, FakeClock, admin_api, install, set_store


@pytest.fixture
def api() -> Iterator[AdminApi]:
    yield from admin_api()


def requested(query: str, variables: dict[str, Any] | None = None) -> int:
    schema = admin_schema()
    document = graphql.parse(query)
    operation = graphql.get_operation_ast(document)
    assert operation is not None
    coerced = graphql.execution.values.get_variable_values(schema, operation.variable_definitions or [],
                                                           variables or {})
    assert not isinstance(coerced, list), coerced
    return CostCalculator(schema, document, operation, coerced).requested()


@pytest.mark.parametrize(("query", "variables", "cost"), [
    ("{ shop { name currencyCode } }", None, 1),
    ("{ a: shop { name } b: shop { email } }", None, 2),
    ("{ shop { ...F } } fragment F on Shop { metafield(key: \"k\") { value } }", None, 2),
    ("query($skip: Boolean!) { shop { metafield(key: \"k\") @skip(if: $skip) { value } } }", {"skip": True}, 1),
    ("query($n: Int!) { customers(first: $n) { nodes { id } } }", {"n": 25}, 27),
    ("{ customers(first: 5) { edges { node { id } } nodes { id } } }", None, 7),
    ("{ customers(first: 5) { nodes { orders(first: 3) { nodes { id } } } } }", None, 2 + 5 * (1 + 2 + 3)),
    # a union costs its costliest member: DiscountCodeBasic's codes(first: 4) beats the free shipping one's 1
    ("{ codeDiscountNodeByCode(code: \"X\") { codeDiscount { ... on DiscountCodeBasic { codes(first: 4) "
     "{ nodes { code } } } ... on DiscountCodeFreeShipping { codesCount { count } } } } }", None, 1 + 1 + 2 + 4),
    ("mutation { discountCodeDelete(id: \"gid://shopify/DiscountCodeNode/1\") { deletedCodeDiscountId } }", None, 10),
    ("mutation($d: DiscountCodeBasicInput!) { discountCodeBasicCreate(basicCodeDiscount: $d) { codeDiscountNode "
     "{ codeDiscount { ... on DiscountCodeBasic { codes(first: 1) { nodes { code } } } } } userErrors { code } } }",
     {"d": {}}, 10 + 2 + 1),
])
def test_requested_cost(query: str, variables: dict[str, Any] | None, cost: int):
    assert requested(query, variables) == cost


# A bulk creation's code costs 1.2 whatever it selects (Shopify's captured charges, see devstore.admin.cost).
@pytest.mark.parametrize(("query", "cost"), [
    ("{ discountRedeemCodeBulkCreation(id: \"gid://shopify/DiscountRedeemCodeBulkCreation/1\") { done codes(first: 10) "
     "{ nodes { code errors { message } discountRedeemCode { code } } } } }", 1 + 2 + 12),
    ("{ discountRedeemCodeBulkCreation(id: \"gid://shopify/DiscountRedeemCodeBulkCreation/1\") { codes(first: 250) "
     "{ edges { node { code errors { message } } } } } }", 1 + 2 + 300),
    ("{ discountRedeemCodeBulkCreation(id: \"gid://shopify/DiscountRedeemCodeBulkCreation/1\") { codes(first: 3) "
     "{ nodes { code } } } }", 1 + 2 + 4),  # 3.6, rounded up
    ("{ discountRedeemCodeBulkCreation(id: \"gid://shopify/DiscountRedeemCodeBulkCreation/1\") { done "
     "importedCount failedCount } }", 1),
    ("mutation { discountRedeemCodeBulkAdd(discountId: \"gid://shopify/DiscountCodeNode/1\", codes: [{code: \"A\"}]) "
     "{ bulkCreation { id codes(first: 10) { nodes { code } } } userErrors { code } } }", 10 + 2 + 12),
    ("mutation { discountCodeRedeemCodeBulkDelete(discountId: \"gid://shopify/DiscountCodeNode/1\", ids: []) "
     "{ job { id done } userErrors { code } } }", 10),
])
def test_requested_cost_of_redeem_codes_in_bulk(query: str, cost: int):
    assert requested(query) == cost


def test_buckets_take_refund_refill_and_cap():
    clock = FakeClock()
    buckets = Buckets(clock)
    assert buckets.take("s", 100, 10, 60) == (True, buckets.status("s", 100, 10))
    assert buckets.status("s", 100, 10).currently_available == 40
    admitted, status = buckets.take("s", 100, 10, 50)
    assert (admitted, status.currently_available) == (False, 40)
    assert buckets.refund("s", 100, 10, 30).currently_available == 70
    clock.advance(2.5)
    assert buckets.status("s", 100, 10).currently_available == 95
    clock.advance(10)
    assert buckets.status("s", 100, 10).as_json() == {"maximumAvailable": 100.0, "currentlyAvailable": 100,
                                                      "restoreRate": 10.0}
    buckets.take("s", 100, 10, 100)
    buckets.reset("s")
    assert buckets.status("s", 100, 10).currently_available == 100


def test_a_smaller_bucket_caps_what_is_available():
    buckets = Buckets(FakeClock())
    buckets.status("s", 2000, 100)
    assert buckets.status("s", 50, 100).currently_available == 50


def test_buckets_are_thread_safe():
    buckets = Buckets(FakeClock())  # the clock stands still: no refill during the race
    admitted: list[bool] = []

    def spend() -> None:
        for _ in range(50):
            admitted.append(buckets.take("s", 2000, 100, 10)[0])

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 200


# --- usage counters --------------------------------------------------------------------------------

DELETE_MUTATION = 'mutation { discountCodeDelete(id: "gid://shopify/DiscountCodeNode/1") { deletedCodeDiscountId } }'


def usage(api: AdminApi, shop: str = SHOP) -> dict[str, int]:
    response = api.http.get(f"/_devstore/stores/{shop}/graphql_usage")
    assert response.status_code == 200
    return response.get_json()


def test_usage_counts_authenticated_calls_and_the_points_charged(api: AdminApi):
    assert usage(api) == {"requests": 0, "points": 0, "throttled": 0}
    costs = [api.body(query)["extensions"]["cost"] for query in (
        "{ shop { name } }",                          # requested 1, actual 1
        "{ customers(first: 5) { nodes { id } } }",   # requested 7, actual 2: no customers
        DELETE_MUTATION,                              # a mutation: 10
        "{ customers { nodes { id } } }",             # refused by analysis after being charged: 2
    )]
    assert [(c["requestedQueryCost"], c["actualQueryCost"]) for c in costs] == [(1, 1), (7, 2), (10, 10), (2, 2)]
    assert "errors" in api.body("{ shop { nme } }")  # invalid: answered, never charged
    assert api.post("{ shop { name } }", token="shpat_wrong").status_code == 401  # not authenticated: not counted
    assert api.post("{ shop { name } }", shop=OTHER_SHOP).status_code == 401

    assert usage(api) == {"requests": 5, "points": 1 + 2 + 10 + 2, "throttled": 0}
    assert usage(api, OTHER_SHOP) == {"requests": 0, "points": 0, "throttled": 0}


def test_throttled_answers_and_faults_count_no_points(api: AdminApi):
    set_store(api.state, faults={"graphql_throttle": 1, "graphql_5xx": 1})
    assert api.post("{ shop { name } }").status_code == 503
    assert api.body("{ shop { name } }")["errors"][0]["extensions"]["code"] == "THROTTLED"  # the fault
    set_store(api.state, bucket_size=5.0)
    throttled = api.body("{ customers(first: 5) { nodes { id } } }")  # requested 7 > 5 available
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
    api.data("{ shop { name } }")

    assert usage(api) == {"requests": 4, "points": 1, "throttled": 2}


def test_usage_is_zeroed_by_delete_and_by_reset(api: AdminApi):
    install(api.state, OTHER_SHOP, token="shpat_other")
    api.data(DELETE_MUTATION)
    api.data(DELETE_MUTATION, token="shpat_other", shop=OTHER_SHOP)

    deleted = api.http.delete(f"/_devstore/stores/{SHOP}/graphql_usage")

    assert deleted.status_code == 200
    assert deleted.get_json() == {"requests": 0, "points": 0, "throttled": 0}
    assert usage(api) == {"requests": 0, "points": 0, "throttled": 0}
    assert usage(api, OTHER_SHOP) == {"requests": 1, "points": 10, "throttled": 0}
    api.http.post("/_devstore/reset")
    assert usage(api, OTHER_SHOP) == {"requests": 0, "points": 0, "throttled": 0}


def test_usage_is_thread_safe():
    counters = Usage()

    def count() -> None:
        for _ in range(500):
            counters.add("s", requests=1, points=3, throttled=1)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters.counts("s") == {"requests": 4000, "points": 12000, "throttled": 4000}


# --- every declared field answers -------------------------------------------------------------------

def selection(typename: str, depth: int = 0) -> str:
    """Every field devstore declares on ``typename``, nested a few levels (arguments made up as needed)."""
    schema = admin_schema()
    named = schema.get_type(typename)
    fields = view_fields(VIEWS[typename]) if typename in VIEWS else PLAIN_TYPES[typename]
    parts = ["__typename"]
    for name in sorted(fields):
        field = named.fields[name]  # type: ignore[union-attr]
        child = graphql.get_named_type(field.type)
        args = '(key: "code")' if "key" in field.args and graphql.is_non_null_type(field.args["key"].type) else ""
        if is_connection(field):
            args = "(first: 2)"
        alias = f"{typename}_{name}: {name}"  # one type's field never merges with another's of the same name
        if graphql.is_leaf_type(child):
            parts.append(alias + args)
        elif depth < 3:
            members = schema.get_possible_types(child) if graphql.is_abstract_type(child) else [child]  # type: ignore[arg-type]
            inner = " ".join(f"... on {m.name} {{ {selection(m.name, depth + 1)} }}" for m in members
                             if returnable(m.name))
            parts.append(f"{alias}{args} {{ __typename {inner} }}")
    return " ".join(parts)


def test_every_declared_field_of_every_type_answers(api: AdminApi):
    customer = api.customer("ann@example.com", first_name="Ann")
    owner = f"gid://shopify/Customer/{customer}"
    api.data('mutation($d: MetafieldDefinitionInput!) { metafieldDefinitionCreate(definition: $d) { userErrors '
             '{ code } } }', {"d": {"name": "Code", "key": "code", "type": "single_line_text_field",
                                   "ownerType": "CUSTOMER"}})
    api.data('mutation($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) { userErrors { code } } }',
             {"m": [{"ownerId": owner, "key": "code", "value": "A-1"}]})
    created = api.data('mutation($d: DiscountCodeBasicInput!) { discountCodeBasicCreate(basicCodeDiscount: $d) '
                       '{ codeDiscountNode { id } userErrors { code } } }', {"d": {
                           "title": "T", "code": "ALL-FIELDS", "startsAt": "2026-01-01T00:00:00Z",
                           "context": {"customers": {"add": [owner]}},
                           "minimumRequirement": {"subtotal": {"greaterThanOrEqualToSubtotal": "10"}},
                           "customerGets": {"value": {"percentage": 0.25}, "items": {"all": True}}}})
    node = created["discountCodeBasicCreate"]["codeDiscountNode"]["id"]
    api.data('mutation { discountCodeFreeShippingCreate(freeShippingCodeDiscount: {title: "F", code: "SHIP", '
             'startsAt: "2026-01-01T00:00:00Z"}) { userErrors { code } } }')
    hook = api.data('mutation { webhookSubscriptionCreate(topic: ORDERS_PAID, webhookSubscription: '
                    '{uri: "https://a.test/h"}) { webhookSubscription { id } } }')
    order = api.order(codes=("all-fields",), customer_id=customer)
    bulk = api.data('mutation($id: ID!) { discountRedeemCodeBulkAdd(discountId: $id, codes: [{code: "MORE-1"}, '
                    '{code: "ship"}]) { bulkCreation { id } } }', {"id": node})
    creation = bulk["discountRedeemCodeBulkAdd"]["bulkCreation"]["id"]
    queries = {
        "customer": (f'customer(id: "{owner}")', "Customer"),
        "order": (f'order(id: "gid://shopify/Order/{order}")', "Order"),
        "shop": ("shop", "Shop"),
        "discount": (f'codeDiscountNode(id: "{node}")', "DiscountCodeNode"),
        "discountNode": (f'discountNode(id: "{node.replace("DiscountCodeNode", "DiscountNode")}")', "DiscountNode"),
        "freeShipping": ('codeDiscountNodeByCode(code: "ship")', "DiscountCodeNode"),
        "hook": (f'webhookSubscription(id: "{hook["webhookSubscriptionCreate"]["webhookSubscription"]["id"]}")',
                 "WebhookSubscription"),
        "bulkCreation": (f'discountRedeemCodeBulkCreation(id: "{creation}")', "DiscountRedeemCodeBulkCreation"),
    }
    for label, (field, typename) in queries.items():
        body = api.body(f"{{ {field} {{ {selection(typename)} }} }}")
        assert "errors" not in body, (label, body["errors"])
        assert body["data"][field.split("(")[0]] is not None, label
        assert body["extensions"]["cost"]["actualQueryCost"] <= body["extensions"]["cost"]["requestedQueryCost"]


def test_declarations_name_fields_that_exist_in_the_schema():
    schema = admin_schema()
    for typename in [*VIEWS, *PLAIN_TYPES]:
        named = schema.get_type(typename)
        assert named is not None, typename
        fields = view_fields(VIEWS[typename]) if typename in VIEWS else PLAIN_TYPES[typename]
        assert fields <= set(named.fields), (typename, fields - set(named.fields))  # type: ignore[union-attr]
        assert all(implemented(typename, name) for name in fields)
