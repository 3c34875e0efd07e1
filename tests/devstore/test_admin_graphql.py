"""devstore's Admin GraphQL endpoint: auth, versions, validation, cost, throttling, faults, the app's client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import graphql
import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server

from app.shopify import client as app_client
from devstore.admin.checks import Checker
from devstore.admin.executor import max_cost_exceeded
from devstore.admin.schema import admin_schema
from devstore.models import DiscountCode, Installation, Store
from tests.conftest import make_settings
from tests.devstore.test_admin_support import (
    SHOP,
    TOKEN,
    VERSION,
    AdminApi,
    admin_api,
    install,
    set_store,
)


@pytest.fixture
def api() -> Iterator[AdminApi]:
    yield from admin_api()

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "samples"
UNAUTHORIZED = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
SHOP_QUERY = "{ shop { id name } }"
TAGS_ADD = ("mutation t($id: ID!, $tags: [String!]!) "
            "{ tagsAdd(id: $id, tags: $tags) { node { id } userErrors { message } } }")


# --- the door: store, token, version ----------------------------------------------------------------

def test_an_unknown_store_is_not_found(api: AdminApi):
    response = api.post(SHOP_QUERY, shop="nowhere.myshopify.com")
    assert response.status_code == 404


@pytest.mark.parametrize("token", [None, "", "shpat_wrong"], ids=["no-token", "empty-token", "wrong-token"])
def test_a_missing_or_wrong_token_is_refused_with_shopifys_401(api: AdminApi, token: str | None):
    response = api.post(SHOP_QUERY, token=token)
    assert response.status_code == 401
    assert response.get_json() == UNAUTHORIZED


@pytest.mark.parametrize("change", [
    {"installed": False},
    {"access_token_expires_at": datetime.now(UTC) - timedelta(seconds=1)},
], ids=["uninstalled", "expired"])
def test_an_uninstalled_or_expired_installation_is_refused(api: AdminApi, change: dict[str, Any]):
    with api.state.session() as session:
        installation = session.query(Installation).filter_by(shop=SHOP).one()
        for name, value in change.items():
            setattr(installation, name, value)
    response = api.post(SHOP_QUERY)
    assert (response.status_code, response.get_json()) == (401, UNAUTHORIZED)


def test_a_token_of_another_store_is_refused(api: AdminApi):
    install(api.state, "other.myshopify.com", token="shpat_other")
    assert api.post(SHOP_QUERY, token="shpat_other").status_code == 401
    assert api.post(SHOP_QUERY, token="shpat_other", shop="other.myshopify.com").status_code == 200


def test_an_unexpired_expiring_token_works(api: AdminApi):
    with api.state.session() as session:
        session.query(Installation).filter_by(shop=SHOP).one().access_token_expires_at = \
            datetime.now(UTC) + timedelta(hours=1)
    assert api.data(SHOP_QUERY)["shop"]["name"] == "Demo"


@pytest.mark.parametrize(("asked", "served"), [
    ("2026-10", "2026-10"), ("2026-01", "2026-01"), ("2025-07", "2026-01"), ("2099-01", "2026-01"),
    ("latest", "2026-01"), ("unstable", "2026-01"),
])
def test_an_unsupported_version_falls_forward_to_the_oldest_supported(api: AdminApi, asked: str, served: str):
    response = api.post(SHOP_QUERY, version=asked)
    assert response.status_code == 200
    assert response.headers["X-Shopify-API-Version"] == served


def test_the_version_header_is_on_refusals_too(api: AdminApi):
    assert api.post(SHOP_QUERY, token="nope", version="2020-01").headers["X-Shopify-API-Version"] == "2026-01"


def test_a_body_without_a_query_is_a_400(api: AdminApi):
    response = api.http.post(f"/stores/{SHOP}/admin/api/{VERSION}/graphql.json", json={"variables": {}},
                             headers={"X-Shopify-Access-Token": TOKEN})
    assert response.status_code == 400
    assert response.get_json() == {"errors": {"query": "Required parameter missing or invalid"}}


def test_an_application_graphql_body_is_accepted(api: AdminApi):
    response = api.http.post(f"/stores/{SHOP}/admin/api/{VERSION}/graphql.json", data=SHOP_QUERY,
                             headers={"X-Shopify-Access-Token": TOKEN, "Content-Type": "application/graphql"})
    assert response.get_json()["data"]["shop"]["name"] == "Demo"


# --- documents that cannot run ----------------------------------------------------------------------

def test_a_syntax_error_is_answered_with_200_and_its_location(api: AdminApi):
    body = api.body("{ shop { id ")
    [error] = body["errors"]
    assert error["extensions"]["code"] == "parseError"
    assert error["locations"] == [{"line": 1, "column": 13}]
    assert "data" not in body


def test_a_misspelt_field_fails_validation_as_on_shopify(api: AdminApi):
    body = api.body("query q { webhookSubscriptions(first: 1) { nodes { id topik } } }")
    assert body == {"errors": [{
        "message": "Field 'topik' doesn't exist on type 'WebhookSubscription'",
        "locations": [{"line": 1, "column": 55}],
        "extensions": {"code": "undefinedField", "typeName": "WebhookSubscription", "fieldName": "topik"},
    }]}


@pytest.mark.parametrize(("query", "code", "words"), [
    ("query q { webhookSubscriptions(first: 1, topic: APP_UNINSTALLED) { nodes { id } } }",
     "argumentNotAccepted", "Field 'webhookSubscriptions' doesn't accept argument 'topic'"),
    ("mutation m { webhookSubscriptionCreate(topic: APP_UNINSTALED, webhookSubscription: {uri: \"x\"}) "
     "{ userErrors { field } } }", "argumentLiteralsIncompatible", "APP_UNINSTALED"),
    ("query q($first: Int!) { webhookSubscriptions(first: $frist) { nodes { id } } }",
     "variableNotDefined", "$frist"),
    ("{ shop }", "selectionMismatch", "shop"),
], ids=["unknown-argument", "misspelt-enum-value", "undefined-variable", "missing-selection"])
def test_invalid_documents_name_the_problem(api: AdminApi, query: str, code: str, words: str):
    errors = api.body(query)["errors"]
    assert any(e["extensions"]["code"] == code and words in e["message"] for e in errors), errors


def test_a_variable_of_the_wrong_shape_is_refused_before_anything_runs(api: AdminApi):
    body = api.body("mutation m($d: DiscountCodeBasicInput!) { discountCodeBasicCreate(basicCodeDiscount: $d) "
                    "{ userErrors { message } } }", {"d": {"title": "x", "startsAt": "not a date"}})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_VARIABLE"
    assert "startsAt" in error["message"]


def test_a_field_devstore_cannot_back_is_refused_not_invented(api: AdminApi):
    body = api.body("{ shop { id plan { shopifyPlus } } }")
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "DEVSTORE_NOT_IMPLEMENTED"
    assert error["path"] == ["shop", "plan"]
    assert "Shop.plan" in error["message"]


def test_an_unimplemented_mutation_is_refused_and_does_not_run(api: AdminApi):
    body = api.body('mutation { discountCodeBasicUpdate(id: "gid://shopify/DiscountCodeNode/1", '
                    'basicCodeDiscount: {title: "A"}) { userErrors { message } } }')
    assert body["errors"][0]["extensions"]["code"] == "DEVSTORE_NOT_IMPLEMENTED"
    assert body["data"] is None


def test_a_connection_needs_first_or_last(api: AdminApi):
    body = api.body("{ orders { nodes { id } } }")
    assert body["errors"][0]["message"] == "you must provide one of first or last"
    assert body["errors"][0]["path"] == ["orders"]
    assert body["data"] is None


def test_a_page_is_at_most_250(api: AdminApi):
    errors = api.body("{ orders(first: 251) { nodes { id } } }")["errors"]
    assert "Expected a page size from 0 to 250" in errors[0]["message"]


def test_an_input_array_is_at_most_250(api: AdminApi):
    body = api.body("mutation t($tags: [String!]!) { tagsAdd(id: \"gid://shopify/Customer/1\", tags: $tags) "
                    "{ userErrors { message } } }", {"tags": [f"t{i}" for i in range(251)]})
    assert body["errors"][0]["message"] == "The input array size of 251 is greater than the maximum allowed of 250."
    assert body["data"] is None


def test_a_missing_scope_is_shopifys_access_denied(api: AdminApi):
    with api.state.session() as session:
        session.query(Installation).filter_by(shop=SHOP).one().scopes = "read_customers"
    body = api.body("{ shop { name } orders(first: 1) { nodes { id } } }")
    assert body["data"] is None  # orders is non-null, so its error nulls the whole data
    [error] = body["errors"]
    assert error["message"] == ("Access denied for orders field. Required access: `read_orders` access scope.")
    assert error["extensions"]["code"] == "ACCESS_DENIED"


def test_write_scope_includes_read(api: AdminApi):
    with api.state.session() as session:
        session.query(Installation).filter_by(shop=SHOP).one().scopes = "write_customers"
    customer = api.customer("a@example.com")
    assert api.data('query($id: ID!) { customer(id: $id) { email } }',
                    {"id": f"gid://shopify/Customer/{customer}"})["customer"]["email"] == "a@example.com"


# --- the app's own documents ------------------------------------------------------------------------

APP_DOCUMENTS = sorted(app_client.DOCUMENTS.glob("*.graphql"))


@pytest.mark.parametrize("path", APP_DOCUMENTS, ids=lambda p: p.name)
def test_every_app_document_asks_only_for_what_devstore_answers(path: Path):
    schema = admin_schema()
    document = graphql.parse(path.read_text())
    assert graphql.validate(schema, document) == []
    [operation] = document.definitions
    checker = Checker(schema, document, operation, {})  # type: ignore[arg-type]
    checker.check_arguments = False
    assert checker.problems() == []


def test_the_app_webhook_documents_run(api: AdminApi):
    create = app_client.document("webhookSubscriptionCreate")
    created = api.data(create, {"topic": "APP_UNINSTALLED",
                                "webhookSubscription": {"uri": "https://oncecode.test/webhooks"}})
    subscription = created["webhookSubscriptionCreate"]["webhookSubscription"]
    assert created["webhookSubscriptionCreate"]["userErrors"] == []
    listed = api.data(app_client.document("webhookSubscriptions"), {"topics": ["APP_UNINSTALLED"], "first": 10})
    assert listed["webhookSubscriptions"]["nodes"] == [subscription]
    updated = api.data(app_client.document("webhookSubscriptionUpdate"),
                       {"id": subscription["id"], "webhookSubscription": {"uri": "https://new.oncecode.test/webhooks"}})
    assert updated["webhookSubscriptionUpdate"]["webhookSubscription"]["uri"] == "https://new.oncecode.test/webhooks"


# --- cost -------------------------------------------------------------------------------------------

def test_costs_follow_shopifys_rules(api: AdminApi):
    customer = api.customer("c@example.com")
    for buyer in (customer, None, None):
        api.order(customer_id=buyer)
    query = ("{ orders(first: 10) { edges { cursor node { id name customer { id } } } pageInfo { hasNextPage } } }")
    body = api.body(query)
    # requested: 2 + 10 × (order 1 + customer 1); actual: 2 + 3 returned × 2 (a null customer was still looked up)
    assert body["extensions"]["cost"]["requestedQueryCost"] == 22
    assert body["extensions"]["cost"]["actualQueryCost"] == 8
    assert body["extensions"]["cost"]["throttleStatus"] == {
        "maximumAvailable": 2000.0, "currentlyAvailable": 1992, "restoreRate": 100.0}


@pytest.mark.parametrize(("query", "requested"), [
    ("{ shop { id name email } }", 1),
    ("{ __typename shop { id } }", 1),
    ('{ codeDiscountNodeByCode(code: "X") { id codeDiscount { __typename ... on DiscountCodeBasic '
     '{ codesCount { count } shortSummary } } } }', 3),
    ('{ codeDiscountNodeByCode(code: "X") { codeDiscount { ... on DiscountCodeBasic { codes(first: 5) '
     '{ nodes { code } } } } } }', 1 + 1 + 2 + 5),
    ("{ webhookSubscriptions(first: 50) { nodes { id topic uri } } }", 52),
    ("{ webhookSubscriptions(last: 3) { edges { cursor } } }", 2),
    ('mutation { tagsAdd(id: "gid://shopify/Customer/1", tags: ["a"]) { node { id } userErrors { message } } }', 10),
    ('mutation { a: tagsAdd(id: "gid://shopify/Customer/1", tags: ["a"]) { userErrors { message } } '
     'b: tagsAdd(id: "gid://shopify/Customer/1", tags: ["b"]) { userErrors { message } } }', 20),
], ids=["object", "typename-free", "sample-union", "nested-connection", "app-document", "edges-cursor-only",
        "mutation", "two-mutations"])
def test_requested_cost_of_known_documents(api: AdminApi, query: str, requested: int):
    assert api.body(query)["extensions"]["cost"]["requestedQueryCost"] == requested


def test_the_sample_query_costs_what_shopify_says():
    # graphql-rate-limits-cost.json: products(first: 1) { edges { node { title } } } costs 3. The subset
    # has no products root field, so the same shape is costed on a connection it has.
    from devstore.admin.cost import CostCalculator
    schema = admin_schema()
    document = graphql.parse("{ webhookSubscriptions(first: 1) { edges { node { uri } } } }")
    assert CostCalculator(schema, document, document.definitions[0], {}).requested() == 3  # type: ignore[arg-type]


def test_max_cost_exceeded_matches_shopifys_error(api: AdminApi):
    query = "{ orders(first: 250) { nodes { customer { orders(first: 5) { nodes { id } } } } } }"
    body = api.body(query)
    cost = 2 + 250 * (1 + 1 + 2 + 5)
    assert body == {"errors": [max_cost_exceeded(cost)]}
    if SAMPLES.exists():  # Shopify's published error, word for word
        sample = json.loads((SAMPLES / "graphql-error-max-cost-exceeded.json").read_text())["response"]
        assert max_cost_exceeded(2003) == sample["errors"][0]
    # nothing was charged
    assert api.body(SHOP_QUERY)["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1999


# --- throttling -------------------------------------------------------------------------------------

def test_an_empty_bucket_throttles_then_refills_at_the_restore_rate(api: AdminApi):
    set_store(api.state, bucket_size=30.0, restore_rate=10.0)
    customer = f"gid://shopify/Customer/{api.customer('t@example.com')}"
    for left in (20, 10, 0):
        body = api.body(TAGS_ADD, {"id": customer, "tags": ["x"]})
        assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == left
    throttled = api.body(TAGS_ADD, {"id": customer, "tags": ["x"]})
    assert throttled == {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED",
                                                           "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
        "extensions": {"cost": {"requestedQueryCost": 10, "actualQueryCost": None, "throttleStatus": {
            "maximumAvailable": 30.0, "currentlyAvailable": 0, "restoreRate": 10.0}}},
    }
    api.clock.advance(0.5)  # 5 points back: still not enough for 10
    assert api.body(TAGS_ADD, {"id": customer, "tags": ["x"]})["extensions"]["cost"]["throttleStatus"][
        "currentlyAvailable"] == 5
    api.clock.advance(0.5)
    assert "errors" not in api.body(TAGS_ADD, {"id": customer, "tags": ["x"]})
    api.clock.advance(3600)  # refills to the bucket size, no further
    status = api.body(SHOP_QUERY)["extensions"]["cost"]["throttleStatus"]
    assert status["currentlyAvailable"] == 29


def test_the_actual_cost_is_given_back(api: AdminApi):
    body = api.body("{ webhookSubscriptions(first: 250) { nodes { id } } }")
    assert body["extensions"]["cost"]["requestedQueryCost"] == 252
    assert body["extensions"]["cost"]["actualQueryCost"] == 2
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1998


def test_a_call_costing_more_than_is_left_is_throttled_even_if_it_would_cost_less(api: AdminApi):
    set_store(api.state, bucket_size=100.0, restore_rate=1.0)
    body = api.body("{ webhookSubscriptions(first: 100) { nodes { id } } }")  # requests 102 > 100
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 100


def test_stores_have_separate_buckets(api: AdminApi):
    install(api.state, "other.myshopify.com", token="shpat_other")
    set_store(api.state, bucket_size=10.0, restore_rate=1.0)
    customer = f"gid://shopify/Customer/{api.customer('s@example.com')}"
    api.body(TAGS_ADD, {"id": customer, "tags": ["x"]})
    assert api.body(TAGS_ADD, {"id": customer, "tags": ["x"]})["errors"][0]["extensions"]["code"] == "THROTTLED"
    other = api.body(SHOP_QUERY, token="shpat_other", shop="other.myshopify.com")
    assert other["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1999


# --- faults -----------------------------------------------------------------------------------------

def faults(api: AdminApi) -> dict[str, Any]:
    with api.state.session() as session:
        store = session.get(Store, SHOP)
        assert store is not None
        return dict(store.faults)


def test_5xx_fault_answers_503_the_next_n_calls(api: AdminApi):
    set_store(api.state, faults={"graphql_5xx": 2})
    for _ in range(2):
        response = api.post(SHOP_QUERY)
        assert response.status_code == 503
        [error] = response.get_json()["errors"]
        assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        assert error["message"].startswith("Internal error. Looks like something went wrong on our end.")
    assert api.post(SHOP_QUERY).status_code == 200
    assert faults(api)["graphql_5xx"] == 0


def test_throttle_fault_throttles_regardless_of_the_bucket(api: AdminApi):
    set_store(api.state, faults={"graphql_throttle": 1})
    body = api.body(SHOP_QUERY)
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000
    assert "errors" not in api.body(SHOP_QUERY)


def test_timeout_fault_answers_late(api: AdminApi):
    set_store(api.state, faults={"graphql_timeout": 1, "timeout_seconds": 0.2})
    started = time.monotonic()
    assert api.data(SHOP_QUERY)["shop"]["name"] == "Demo"
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    api.data(SHOP_QUERY)
    assert time.monotonic() - started < 0.2
    assert faults(api)["graphql_timeout"] == 0


# --- the app's real client over real HTTP ----------------------------------------------------------

@pytest.fixture
def served(api: AdminApi) -> Iterator[str]:
    """The devstore on a real loopback port; yields the app's ``SHOPIFY_STORE_BASE_URL`` for it."""
    server = make_server("127.0.0.1", 0, api.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/stores/{{shop}}"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


CREATE_CODE = """mutation($d: DiscountCodeBasicInput!) { discountCodeBasicCreate(basicCodeDiscount: $d) {
  codeDiscountNode { id } userErrors { code } } }"""
LOST_DELAY = 0.8


def create_code_over_http(served: str, code: str, timeout: float) -> requests.Response:
    """``discountCodeBasicCreate`` for ``code`` through a real socket, with this read timeout."""
    variables = {"d": {"title": code, "code": code, "startsAt": "2026-01-01T00:00:00Z",
                       "customerGets": {"value": {"percentage": 0.1}, "items": {"all": True}}}}
    return requests.post(served.format(shop=SHOP) + f"/admin/api/{VERSION}/graphql.json",
                         json={"query": CREATE_CODE, "variables": variables},
                         headers={"X-Shopify-Access-Token": TOKEN}, timeout=(5, timeout))


def code_exists(api: AdminApi, code: str) -> bool:
    with api.state.session() as session:
        return session.scalar(select(DiscountCode.id).where(DiscountCode.code_key == code)) is not None


def usage(api: AdminApi) -> dict[str, int]:
    return api.http.get(f"/_devstore/stores/{SHOP}/graphql_usage").get_json()


def lose_answers(api: AdminApi, n: int) -> None:
    response = api.http.put(f"/_devstore/stores/{SHOP}/faults",
                            json={"graphql_answer_lost": n, "timeout_seconds": LOST_DELAY})
    assert response.status_code == 200, response.get_json()


def test_answer_lost_fault_commits_the_call_and_answers_late(api: AdminApi, served: str):
    lose_answers(api, 1)
    answered: dict[str, Any] = {}

    def call() -> None:
        answered["response"] = create_code_over_http(served, "LOST-1", timeout=10)
        answered["at"] = time.monotonic()

    started = time.monotonic()
    caller = threading.Thread(target=call)
    caller.start()
    while not code_exists(api, "LOST-1") and time.monotonic() - started < 5:
        time.sleep(0.01)  # the state lock is free while the answer is held back
    seen = time.monotonic()
    caller.join(timeout=10)

    assert code_exists(api, "LOST-1")
    assert seen - started < LOST_DELAY <= answered["at"] - started  # in the store well before the answer
    body = answered["response"].json()
    assert body["data"]["discountCodeBasicCreate"]["userErrors"] == []
    assert body["extensions"]["cost"]["actualQueryCost"] == 10
    assert faults(api)["graphql_answer_lost"] == 0
    started = time.monotonic()
    create_code_over_http(served, "ON-TIME", timeout=10)
    assert time.monotonic() - started < LOST_DELAY


def test_a_client_that_stops_waiting_never_hears_the_store_accepted_the_call(api: AdminApi, served: str):
    lose_answers(api, 1)
    started = time.monotonic()

    with pytest.raises(requests.exceptions.ReadTimeout):
        create_code_over_http(served, "LOST-2", timeout=LOST_DELAY / 4)

    # The client gave up first; the store carries on (on a busy machine it may still be at it).
    while not code_exists(api, "LOST-2") and time.monotonic() - started < LOST_DELAY:
        time.sleep(0.05)
    assert code_exists(api, "LOST-2")
    assert time.monotonic() - started < LOST_DELAY  # seen while the answer is still held back
    assert usage(api)["points"] == 10  # charged like any executed call


def test_the_apps_admin_client_talks_to_devstore_over_http(served: str):
    client = app_client.AdminClient(make_settings(shopify_store_base_url=served), SHOP, TOKEN)
    payload = client.mutate("webhookSubscriptionCreate", {
        "topic": "CUSTOMERS_CREATE", "webhookSubscription": {"uri": "https://oncecode.test/webhooks"}})
    assert payload["webhookSubscription"]["topic"] == "CUSTOMERS_CREATE"
    assert payload["webhookSubscription"]["id"].startswith("gid://shopify/WebhookSubscription/")
    data = client.query("webhookSubscriptions", {"topics": ["CUSTOMERS_CREATE"], "first": 5})
    assert data["webhookSubscriptions"]["nodes"] == [payload["webhookSubscription"]]
    assert client.last_cost is not None and client.last_cost["requestedQueryCost"] == 7
    with pytest.raises(app_client.UserErrors) as refused:  # the same address again
        client.mutate("webhookSubscriptionCreate", {
            "topic": "CUSTOMERS_CREATE", "webhookSubscription": {"uri": "https://oncecode.test/webhooks"}})
    assert refused.value.errors[0]["message"] == "Address for this topic has already been taken"


def test_the_apps_client_sees_throttling_and_bad_tokens(served: str, api: AdminApi):
    settings = make_settings(shopify_store_base_url=served)
    set_store(api.state, faults={"graphql_throttle": 1})  # one THROTTLED answer: waited out
    assert "webhookSubscriptions" in app_client.AdminClient(settings, SHOP, TOKEN).query(
        "webhookSubscriptions", {"first": 1})
    set_store(api.state, faults={"graphql_throttle": 10})  # throttled again and again: handed to the job
    with pytest.raises(app_client.Throttled):
        app_client.AdminClient(settings, SHOP, TOKEN).query("webhookSubscriptions", {"first": 1})
    with pytest.raises(app_client.AccessDenied):
        app_client.AdminClient(settings, SHOP, "shpat_revoked").query("webhookSubscriptions", {"first": 1})
