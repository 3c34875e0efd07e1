"""Code discounts through devstore's Admin API: create, refuse, look up, (de)activate, delete, redeem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from devstore.checkout import place_order
from devstore.errors import CodeRefused
from devstore.models import Discount, DiscountCode
from tests.devstore.test_admin_support import SHOP, AdminApi, admin_api


@pytest.fixture
def api() -> Iterator[AdminApi]:
    yield from admin_api()

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "samples"

CREATE = """
mutation create($d: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $d) {
    codeDiscountNode {
      id
      codeDiscount {
        __typename
        ... on DiscountCodeBasic {
          title status startsAt endsAt usageLimit appliesOncePerCustomer asyncUsageCount summary shortSummary
          createdAt updatedAt discountClasses
          codes(first: 1) { nodes { id code asyncUsageCount } }
          codesCount { count precision }
          customerGets {
            value {
              ... on DiscountPercentage { percentage }
              ... on DiscountAmount { amount { amount currencyCode } appliesOnEachItem }
            }
            items { ... on AllDiscountItems { allItems } }
          }
          context { __typename ... on DiscountCustomers { customers { id } } ... on DiscountBuyerSelectionAll { all } }
          combinesWith { orderDiscounts productDiscounts shippingDiscounts }
          minimumRequirement { ... on DiscountMinimumSubtotal { greaterThanOrEqualToSubtotal { amount currencyCode } } }
        }
      }
    }
    userErrors { field code message extraInfo }
  }
}
"""
BY_CODE = """
query byCode($code: String!) {
  codeDiscountNodeByCode(code: $code) {
    id
    codeDiscount { __typename ... on DiscountCodeBasic { title status endsAt codesCount { count } shortSummary } }
  }
}
"""


def welcome(customer: int | None = None, **changes: Any) -> dict[str, Any]:
    """The issuance engine's input (DESIGN.md): one single-use code, locked to its customer."""
    values: dict[str, Any] = {
        "title": "Welcome WELCOME-7QX2KD", "code": "WELCOME-7QX2KD",
        "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-12-25T00:00:00Z",
        "usageLimit": 1, "appliesOncePerCustomer": True,
        "customerGets": {"value": {"percentage": 0.1}, "items": {"all": True}},
        "combinesWith": {"orderDiscounts": False, "productDiscounts": True, "shippingDiscounts": True},
    }
    if customer is not None:
        values["context"] = {"customers": {"add": [f"gid://shopify/Customer/{customer}"]}}
    values.update(changes)
    return values


def create(api: AdminApi, values: dict[str, Any]) -> dict[str, Any]:
    return api.data(CREATE, {"d": values})["discountCodeBasicCreate"]


def discounts_stored(api: AdminApi) -> int:
    with api.state.session() as session:
        return session.scalar(select(func.count()).select_from(Discount)) or 0


def test_create_a_locked_single_use_percentage_code(api: AdminApi):
    customer = api.customer("ann@example.com")
    payload = create(api, welcome(customer, minimumRequirement={"subtotal": {"greaterThanOrEqualToSubtotal": "50.0"}}))
    assert payload["userErrors"] == []
    node = payload["codeDiscountNode"]
    assert node["id"].startswith("gid://shopify/DiscountCodeNode/")
    discount = node["codeDiscount"]
    assert discount["__typename"] == "DiscountCodeBasic"
    assert {k: discount[k] for k in ("title", "status", "startsAt", "endsAt", "usageLimit", "appliesOncePerCustomer",
                                     "asyncUsageCount", "discountClasses")} == {
        "title": "Welcome WELCOME-7QX2KD", "status": "ACTIVE", "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2099-12-25T00:00:00Z", "usageLimit": 1, "appliesOncePerCustomer": True, "asyncUsageCount": 0,
        "discountClasses": ["ORDER"]}
    assert discount["codes"]["nodes"][0]["code"] == "WELCOME-7QX2KD"
    assert discount["codesCount"] == {"count": 1, "precision": "EXACT"}
    assert discount["customerGets"] == {"value": {"percentage": 0.1}, "items": {"allItems": True}}
    assert discount["context"] == {"__typename": "DiscountCustomers",
                                   "customers": [{"id": f"gid://shopify/Customer/{customer}"}]}
    assert discount["combinesWith"] == {"orderDiscounts": False, "productDiscounts": True, "shippingDiscounts": True}
    assert discount["minimumRequirement"] == {"greaterThanOrEqualToSubtotal": {"amount": "50.0", "currencyCode": "EUR"}}
    assert discount["shortSummary"] == "10% off entire order"
    assert discount["summary"] == ("10% off entire order • Minimum purchase of €50.00 • For 1 customer • "
                                   "One use per customer • Limit of 1 use")


def test_create_a_fixed_amount_code_for_everyone(api: AdminApi):
    values = welcome(customerGets={"value": {"discountAmount": {"amount": "5.00", "appliesOnEachItem": False}},
                                   "items": {"all": True}})
    values["context"] = {"all": "ALL"}
    discount = create(api, values)["codeDiscountNode"]["codeDiscount"]
    assert discount["customerGets"]["value"] == {"amount": {"amount": "5.0", "currencyCode": "EUR"},
                                                 "appliesOnEachItem": False}
    assert discount["context"] == {"__typename": "DiscountBuyerSelectionAll", "all": "ALL"}
    assert discount["shortSummary"] == "€5.00 off entire order"


def test_the_docs_sample_creates_the_same_shape(api: AdminApi):
    # graphql-discountCodeBasicCreate.json, with `context` for the deprecated `customerSelection` input
    # (2025-10+), reading back `customerSelection` as the sample does.
    if not SAMPLES.exists():
        pytest.skip("the shared samples are not here")
    sample = json.loads((SAMPLES / "graphql-discountCodeBasicCreate.json").read_text())
    customer = api.customer("sample@example.com")
    variables = sample["variables"]["basicCodeDiscount"]
    variables["context"] = {"customers": {"add": [f"gid://shopify/Customer/{customer}"]}}
    del variables["customerSelection"]
    body = api.data(sample["query"], {"basicCodeDiscount": variables})
    expected = sample["response"]["discountCodeBasicCreate"]
    got = body["discountCodeBasicCreate"]
    assert got["userErrors"] == expected["userErrors"]
    assert set(got["codeDiscountNode"]["codeDiscount"]) == set(expected["codeDiscountNode"]["codeDiscount"])
    assert got["codeDiscountNode"]["codeDiscount"]["customerSelection"] == {
        "customers": [{"id": f"gid://shopify/Customer/{customer}"}]}
    assert got["codeDiscountNode"]["codeDiscount"]["customerGets"] == expected["codeDiscountNode"]["codeDiscount"][
        "customerGets"]


@pytest.mark.parametrize("again", ["WELCOME-7QX2KD", "welcome-7qx2kd", "  Welcome-7qx2KD "])
def test_a_code_already_used_in_the_store_is_taken_case_insensitively(api: AdminApi, again: str):
    create(api, welcome())
    payload = create(api, welcome(code=again, title="Again"))
    assert payload == {"codeDiscountNode": None, "userErrors": [{
        "field": ["basicCodeDiscount", "code"], "code": "TAKEN",
        "message": "Code must be unique. Please try a different code.", "extraInfo": None}]}
    assert discounts_stored(api) == 1


def test_codes_are_unique_per_store_not_across_stores(api: AdminApi):
    from tests.devstore.test_admin_support import install
    install(api.state, "other.myshopify.com", token="shpat_other")
    create(api, welcome())
    other = api.data(CREATE, {"d": welcome()}, token="shpat_other", shop="other.myshopify.com")
    assert other["discountCodeBasicCreate"]["userErrors"] == []


@pytest.mark.parametrize(("changes", "field", "code"), [
    ({"endsAt": "2025-12-31T00:00:00Z"}, ["basicCodeDiscount", "endsAt"], "INVALID"),
    ({"endsAt": "2026-01-01T00:00:00Z"}, ["basicCodeDiscount", "endsAt"], "INVALID"),
    ({"title": "  "}, ["basicCodeDiscount", "title"], "BLANK"),
    ({"title": None}, ["basicCodeDiscount", "title"], "BLANK"),
    ({"code": None}, ["basicCodeDiscount", "code"], "BLANK"),
    ({"code": ""}, ["basicCodeDiscount", "code"], "TOO_SHORT"),
    ({"code": "X" * 256}, ["basicCodeDiscount", "code"], "TOO_LONG"),
    ({"startsAt": None}, ["basicCodeDiscount", "startsAt"], "BLANK"),
    ({"usageLimit": 0}, ["basicCodeDiscount", "usageLimit"], "GREATER_THAN"),
    ({"customerGets": {"value": {"percentage": 1.5}, "items": {"all": True}}},
     ["basicCodeDiscount", "customerGets", "value", "percentage"], "VALUE_OUTSIDE_RANGE"),
    ({"customerGets": {"value": {"percentage": -0.1}, "items": {"all": True}}},
     ["basicCodeDiscount", "customerGets", "value", "percentage"], "VALUE_OUTSIDE_RANGE"),
    ({"customerGets": {"value": {"percentage": 0.1, "discountAmount": {"amount": "1"}}, "items": {"all": True}}},
     ["basicCodeDiscount", "customerGets", "value"], "TOO_MANY_ARGUMENTS"),
    ({"customerGets": {"value": {"discountAmount": {"amount": "-1"}}, "items": {"all": True}}},
     ["basicCodeDiscount", "customerGets", "value", "discountAmount", "amount"], "GREATER_THAN"),
    ({"customerGets": {"value": {"percentage": 0.1}}}, ["basicCodeDiscount", "customerGets", "items"], "BLANK"),
    ({"customerGets": {"value": {"percentage": 0.1}, "items": {"all": False}}},
     ["basicCodeDiscount", "customerGets", "items"], "APPLIES_ON_NOTHING"),
    ({"customerGets": {"value": {"percentage": 0.1},
                       "items": {"products": {"productsToAdd": ["gid://shopify/Product/1"]}}}},
     ["basicCodeDiscount", "customerGets", "items"], "INVALID"),
    ({"minimumRequirement": {"subtotal": {"greaterThanOrEqualToSubtotal": "50"},
                             "quantity": {"greaterThanOrEqualToQuantity": "2"}}},
     ["basicCodeDiscount", "minimumRequirement"], "MINIMUM_SUBTOTAL_AND_QUANTITY_RANGE_BOTH_PRESENT"),
    ({"context": {"customers": {"add": ["gid://shopify/Customer/404"]}}},
     ["basicCodeDiscount", "context", "customers", "add"], "INVALID"),
    ({"context": {"customers": {"add": ["gid://shopify/Order/1"]}}},
     ["basicCodeDiscount", "context", "customers", "add"], "INVALID"),
    ({"context": {"all": "ALL", "customers": {"add": []}}}, ["basicCodeDiscount", "context"], "TOO_MANY_ARGUMENTS"),
    ({"context": {"customerSegments": {"add": ["gid://shopify/Segment/1"]}}},
     ["basicCodeDiscount", "context", "customerSegments"], "INVALID"),
], ids=["ends-before-start", "ends-at-start", "blank-title", "no-title", "no-code", "empty-code", "long-code",
        "no-start", "zero-usage-limit", "percentage-above-1", "negative-percentage", "two-values", "negative-amount",
        "no-items", "no-items-at-all", "products", "both-minimums", "unknown-customer", "not-a-customer",
        "two-contexts", "segments"])
def test_invalid_discounts_are_refused_with_user_errors(api: AdminApi, changes: dict[str, Any], field: list[str],
                                                         code: str):
    payload = create(api, welcome(**changes))
    assert payload["codeDiscountNode"] is None
    assert any(e["field"] == field and e["code"] == code for e in payload["userErrors"]), payload["userErrors"]
    assert all(e["message"] for e in payload["userErrors"])
    assert discounts_stored(api) == 0


def test_ends_before_start_says_so_in_shopifys_words(api: AdminApi):
    [error] = create(api, welcome(endsAt="2025-01-01T00:00:00Z"))["userErrors"]
    assert error == {"field": ["basicCodeDiscount", "endsAt"], "code": "INVALID",
                     "message": "Ends at needs to be after starts_at", "extraInfo": None}


def test_a_customer_of_another_store_is_unknown_here(api: AdminApi):
    stranger = api.customer("stranger@example.com", shop="other.myshopify.com")
    payload = create(api, welcome(stranger))
    assert payload["userErrors"][0]["code"] == "INVALID"


def test_look_up_by_code_is_case_insensitive(api: AdminApi):
    created = create(api, welcome())["codeDiscountNode"]
    for typed in ("WELCOME-7QX2KD", "welcome-7qx2kd", "Welcome-7Qx2Kd"):
        found = api.data(BY_CODE, {"code": typed})["codeDiscountNodeByCode"]
        assert found["id"] == created["id"]
        assert found["codeDiscount"]["codesCount"] == {"count": 1}
    assert api.data(BY_CODE, {"code": "NOPE"})["codeDiscountNodeByCode"] is None


def test_a_scheduled_discount_reads_scheduled(api: AdminApi):
    discount = create(api, welcome(startsAt="2099-01-01T00:00:00Z"))["codeDiscountNode"]["codeDiscount"]
    assert discount["status"] == "SCHEDULED"


def test_deactivate_activate_delete(api: AdminApi):
    node_id = create(api, welcome())["codeDiscountNode"]["id"]
    fields = "codeDiscountNode { id codeDiscount { ... on DiscountCodeBasic { status endsAt } } } userErrors { code }"
    off = api.data(f"mutation($id: ID!) {{ discountCodeDeactivate(id: $id) {{ {fields} }} }}", {"id": node_id})
    discount = off["discountCodeDeactivate"]["codeDiscountNode"]["codeDiscount"]
    assert discount["status"] == "EXPIRED"
    assert discount["endsAt"] < "2099"  # the end moved to the moment of deactivation
    on = api.data(f"mutation($id: ID!) {{ discountCodeActivate(id: $id) {{ {fields} }} }}", {"id": node_id})
    assert on["discountCodeActivate"]["codeDiscountNode"]["codeDiscount"] == {"status": "ACTIVE",
                                                                               "endsAt": "2099-12-25T00:00:00Z"}
    gone = api.data("mutation($id: ID!) { discountCodeDelete(id: $id) { deletedCodeDiscountId userErrors { code } } }",
                    {"id": node_id})
    assert gone["discountCodeDelete"] == {"deletedCodeDiscountId": node_id, "userErrors": []}
    assert api.data(BY_CODE, {"code": "WELCOME-7QX2KD"})["codeDiscountNodeByCode"] is None
    with api.state.session() as session:
        assert session.scalar(select(func.count()).select_from(DiscountCode)) == 0


@pytest.mark.parametrize("mutation", ["discountCodeDeactivate", "discountCodeActivate", "discountCodeDelete"])
def test_an_unknown_discount_is_a_user_error(api: AdminApi, mutation: str):
    body = api.data(f'mutation {{ {mutation}(id: "gid://shopify/DiscountCodeNode/404") {{ userErrors '
                    "{ field code message } } }")
    assert body[mutation]["userErrors"] == [{"field": ["id"], "code": "INVALID", "message": "Discount does not exist"}]


def test_a_code_created_through_the_api_works_once_for_its_customer_at_checkout(api: AdminApi):
    ann, bob = api.customer("ann@example.com"), api.customer("bob@example.com")
    create(api, welcome(ann))
    with api.state.session() as session, pytest.raises(CodeRefused) as refused:
        place_order(session, SHOP, line_items=[{"title": "Tent", "price": "80.00"}], codes=["welcome-7qx2kd"],
                    customer_id=bob)
    assert refused.value.rule == "customer_restricted"
    order = api.order(codes=("welcome-7qx2kd",), customer_id=ann, price="80.00")
    with api.state.session() as session, pytest.raises(CodeRefused) as refused:
        place_order(session, SHOP, line_items=[{"title": "Tent", "price": "80.00"}], codes=["WELCOME-7QX2KD"],
                    customer_id=ann)
    assert refused.value.rule == "usage_limit"
    discount = api.data(BY_CODE.replace("shortSummary", "shortSummary asyncUsageCount"), {"code": "WELCOME-7QX2KD"})
    assert discount["codeDiscountNodeByCode"]["codeDiscount"]["asyncUsageCount"] == 1
    read = api.data('query($id: ID!) { order(id: $id) { discountCodes totalDiscountsSet { shopMoney { amount } } } }',
                    {"id": f"gid://shopify/Order/{order}"})
    assert read["order"] == {"discountCodes": ["welcome-7qx2kd"], "totalDiscountsSet": {"shopMoney": {"amount": "8.0"}}}


FREE_SHIPPING = """
mutation fs($d: DiscountCodeFreeShippingInput!) {
  discountCodeFreeShippingCreate(freeShippingCodeDiscount: $d) {
    codeDiscountNode { codeDiscount { __typename ... on DiscountCodeFreeShipping {
      title shortSummary discountClasses destinationSelection { ... on DiscountCountryAll { allCountries } }
      maximumShippingPrice { amount } appliesOnSubscription } } }
    userErrors { field code message }
  }
}
"""


def test_create_a_free_shipping_code(api: AdminApi):
    values = {"title": "Ship free", "code": "SHIPFREE", "startsAt": "2026-01-01T00:00:00Z",
              "destination": {"all": True}, "combinesWith": {"orderDiscounts": True}}
    payload = api.data(FREE_SHIPPING, {"d": values})["discountCodeFreeShippingCreate"]
    assert payload["userErrors"] == []
    assert payload["codeDiscountNode"]["codeDiscount"] == {
        "__typename": "DiscountCodeFreeShipping", "title": "Ship free", "shortSummary": "Free shipping on all products",
        "discountClasses": ["SHIPPING"], "destinationSelection": {"allCountries": True}, "maximumShippingPrice": None,
        "appliesOnSubscription": False}


@pytest.mark.parametrize(("changes", "code"), [
    ({"combinesWith": {"shippingDiscounts": True}}, "INVALID_COMBINES_WITH_FOR_DISCOUNT_CLASS"),
    ({"destination": {"countries": {"add": ["DE"]}}}, "INVALID"),
    ({"maximumShippingPrice": "10.00"}, "INVALID"),
    ({"code": "WELCOME-7QX2KD"}, "TAKEN"),
])
def test_invalid_free_shipping_codes_are_refused(api: AdminApi, changes: dict[str, Any], code: str):
    create(api, welcome())
    values = {"title": "Ship free", "code": "SHIPFREE", "startsAt": "2026-01-01T00:00:00Z", **changes}
    payload = api.data(FREE_SHIPPING, {"d": values})["discountCodeFreeShippingCreate"]
    assert payload["codeDiscountNode"] is None
    assert [e["code"] for e in payload["userErrors"]] == [code]


def test_discount_node_and_its_metafields(api: AdminApi):
    node_id = create(api, welcome())["codeDiscountNode"]["id"]
    number = node_id.rsplit("/", 1)[1]
    set_body = api.data("mutation($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) "
                        "{ userErrors { code } } }",
                        {"m": [{"ownerId": f"gid://shopify/DiscountNode/{number}", "namespace": "$app",
                                "key": "issued_by", "type": "single_line_text_field", "value": "welcome"}]})
    assert set_body["metafieldsSet"]["userErrors"] == []
    read = api.data('query($id: ID!) { discountNode(id: $id) { id discount { __typename ... on DiscountCodeBasic '
                    '{ title } } metafield(namespace: "$app", key: "issued_by") { value } } }',
                    {"id": f"gid://shopify/DiscountNode/{number}"})
    assert read["discountNode"] == {"id": f"gid://shopify/DiscountNode/{number}",
                                    "discount": {"__typename": "DiscountCodeBasic", "title": "Welcome WELCOME-7QX2KD"},
                                    "metafield": {"value": "welcome"}}
    legacy = api.data('query($id: ID!) { codeDiscountNode(id: $id) { metafields(first: 5) { nodes { key } } } }',
                      {"id": node_id})
    assert legacy["codeDiscountNode"]["metafields"]["nodes"] == [{"key": "issued_by"}]
