"""devstore's asynchronous jobs and the removals built on them: ``discountCodeBulkDelete`` + ``job(id:)``,
and ``metafieldsDelete``, as Shopify documents them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from devstore import create_app
from devstore.checkout import place_order
from devstore.errors import CodeRefused
from devstore.models import Installation
from devstore.state import DevstoreConfig
from tests.devstore.factories import make_discount
from tests.devstore.test_admin_support import CLIENT_ID, OTHER_SHOP, SHOP, AdminApi, FakeClock, install

JOB_SECONDS = 0.5

BULK_DELETE = """
mutation bulkDelete($ids: [ID!], $search: String, $savedSearchId: ID) {
  discountCodeBulkDelete(ids: $ids, search: $search, savedSearchId: $savedSearchId) {
    job { id done }
    userErrors { field code message }
  }
}
"""
JOB = "query poll($id: ID!) { job(id: $id) { id done } }"
BY_CODE = "query byCode($code: String!) { codeDiscountNodeByCode(code: $code) { id } }"
DELETE_METAFIELDS = """
mutation drop($m: [MetafieldIdentifierInput!]!) {
  metafieldsDelete(metafields: $m) { deletedMetafields { ownerId namespace key } userErrors { field message } }
}
"""
SET_METAFIELDS = "mutation set($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) { userErrors { code } } }"


def build(job_seconds: float = JOB_SECONDS) -> Flask:
    app = create_app(DevstoreConfig(api_key=CLIENT_ID, api_secret="s" * 32, deliver_webhooks=False,
                                    job_seconds=job_seconds))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[AdminApi]:
    app = build(getattr(request, "param", JOB_SECONDS))
    clock = FakeClock()
    app.extensions["devstore_admin"].buckets.clock = clock
    install(app.extensions["devstore"])
    install(app.extensions["devstore"], OTHER_SHOP, token="shpat_other")  # noqa: S106
    yield AdminApi(app, app.test_client(), app.extensions["devstore"], clock)
    app.extensions["devstore"].engine.dispose()


def node(number: int) -> str:
    return f"gid://shopify/DiscountCodeNode/{number}"


def bulk_delete(api: AdminApi, **variables: Any) -> dict[str, Any]:
    return api.data(BULK_DELETE, variables)["discountCodeBulkDelete"]


def poll(api: AdminApi, job_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """``job(id:)`` until it reads done (or ``timeout`` passes): what a client of Shopify does."""
    deadline = time.monotonic() + timeout
    while True:
        job = api.data(JOB, {"id": job_id})["job"]
        if job["done"] or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


# A job of a few seconds: on a busy machine half a second can pass between the answer and the next look.
@pytest.mark.parametrize("api", [3.0], indirect=True)
def test_bulk_delete_answers_a_job_that_deletes_the_discounts_a_moment_later(api: AdminApi):
    ids = [make_discount(api.state, f"OLD-{n}") for n in range(3)]
    keep = make_discount(api.state, "KEEP")
    started = bulk_delete(api, ids=[node(n) for n in ids])
    assert started["userErrors"] == [] and started["job"]["done"] is False
    assert started["job"]["id"].startswith("gid://shopify/Job/")
    # Not synchronous: right after the answer the discounts are all still there.
    assert api.data(BY_CODE, {"code": "old-0"})["codeDiscountNodeByCode"] == {"id": node(ids[0])}
    assert api.data(JOB, {"id": started["job"]["id"]})["job"] == {"id": started["job"]["id"], "done": False}

    assert poll(api, started["job"]["id"], timeout=10) == {"id": started["job"]["id"], "done": True}
    for n in range(3):
        assert api.data(BY_CODE, {"code": f"OLD-{n}"})["codeDiscountNodeByCode"] is None
    assert api.data(BY_CODE, {"code": "KEEP"})["codeDiscountNodeByCode"] == {"id": node(keep)}


def test_the_job_runs_whether_or_not_anyone_polls_it(api: AdminApi):
    [discount] = [make_discount(api.state, "GONE-SOON")]
    bulk_delete(api, ids=[node(discount)])
    time.sleep(JOB_SECONDS + 0.1)
    with api.state.session() as session, pytest.raises(CodeRefused) as refused:  # a buyer, not the app
        place_order(session, SHOP, line_items=[{"title": "Tent", "price": "50.00", "quantity": 1}],
                    codes=["GONE-SOON"])
    assert refused.value.rule == "unknown_code"


def test_costs_are_shopifys_a_mutation_ten_a_poll_one(api: AdminApi):
    discount = make_discount(api.state, "PRICED")
    started = api.body(BULK_DELETE, {"ids": [node(discount)]})
    assert started["extensions"]["cost"]["requestedQueryCost"] == 10
    assert started["extensions"]["cost"]["actualQueryCost"] == 10
    polled = api.body(JOB, {"id": started["data"]["discountCodeBulkDelete"]["job"]["id"]})
    assert polled["extensions"]["cost"]["requestedQueryCost"] == 1


def test_deleting_twice_or_deleting_what_is_gone_is_not_an_error(api: AdminApi):
    discount = make_discount(api.state, "TWICE")
    first = bulk_delete(api, ids=[node(discount), node(discount)])
    assert poll(api, first["job"]["id"])["done"]
    again = bulk_delete(api, ids=[node(discount), node(123456789)])
    assert again["userErrors"] == [] and poll(api, again["job"]["id"])["done"]


def test_another_stores_discounts_and_jobs_are_out_of_reach(api: AdminApi):
    theirs = make_discount(api.state, "THEIRS", shop=OTHER_SHOP)
    started = bulk_delete(api, ids=[node(theirs)])
    assert poll(api, started["job"]["id"])["done"]
    assert api.data(BY_CODE, {"code": "THEIRS"}, token="shpat_other",  # noqa: S106
                    shop=OTHER_SHOP)["codeDiscountNodeByCode"] == {"id": node(theirs)}
    assert api.data(JOB, {"id": started["job"]["id"]}, token="shpat_other", shop=OTHER_SHOP)["job"] is None  # noqa: S106


@pytest.mark.parametrize(("variables", "code", "field"), [
    ({}, "MISSING_ARGUMENT", []),
    ({"ids": [node(1)], "search": "status:expired"}, "TOO_MANY_ARGUMENTS", []),
    ({"search": "status:expired"}, "INVALID", ["search"]),
    ({"savedSearchId": "gid://shopify/SavedSearch/1"}, "INVALID", ["savedSearchId"]),
    ({"ids": []}, "BLANK", ["ids"]),
    ({"ids": ["gid://shopify/Customer/1"]}, "INVALID", ["ids"]),
])
def test_bad_arguments_are_user_errors_and_start_no_job(api: AdminApi, variables: dict[str, Any], code: str,
                                                       field: list[str]):
    answer = bulk_delete(api, **variables)
    assert answer["job"] is None
    assert [(e["code"], e["field"]) for e in answer["userErrors"]] == [(code, field)]


def test_more_than_250_ids_is_shopifys_input_limit(api: AdminApi):
    discount = make_discount(api.state, "SAFE")
    body = api.body(BULK_DELETE, {"ids": [node(discount)] * 251})
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    time.sleep(JOB_SECONDS + 0.1)
    assert api.data(BY_CODE, {"code": "SAFE"})["codeDiscountNodeByCode"] is not None


def test_bulk_delete_needs_write_discounts(api: AdminApi):
    with api.state.session() as session:
        session.scalars(select(Installation).where(Installation.shop == OTHER_SHOP)).one().scopes = "read_discounts"
    body = api.body(BULK_DELETE, {"ids": [node(1)]}, token="shpat_other", shop=OTHER_SHOP)  # noqa: S106
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"


@pytest.mark.parametrize(("job_id", "error"), [
    ("gid://shopify/Job/00000000-0000-4000-8000-000000000000", None),
    ("gid://shopify/Customer/1", None),
    ("not a gid", "INVALID_GLOBAL_ID"),
])
def test_an_unknown_job_is_null_and_garbage_is_an_invalid_id(api: AdminApi, job_id: str, error: str | None):
    body = api.body(JOB, {"id": job_id})
    if error is None:
        assert body["data"] == {"job": None} and "errors" not in body
    else:
        assert body["errors"][0]["extensions"]["code"] == error


def test_the_jobs_query_field_is_refused_not_faked(api: AdminApi):
    body = api.body("query($id: ID!) { job(id: $id) { id query { shop { name } } } }", {"id": node(1)})
    assert body["errors"][0]["extensions"]["code"] == "DEVSTORE_NOT_IMPLEMENTED"


# --- metafieldsDelete --------------------------------------------------------------------------------

def customer_with_fields(api: AdminApi) -> str:
    owner = f"gid://shopify/Customer/{api.customer('ann@example.com')}"
    api.data(SET_METAFIELDS, {"m": [
        {"ownerId": owner, "namespace": "$app", "key": "welcome_code", "type": "single_line_text_field",
         "value": "WELCOME-1"},
        {"ownerId": owner, "namespace": "$app", "key": "welcome_code_url", "type": "url", "value": "https://a.test/x"},
    ]})
    return owner


def customer_fields(api: AdminApi, owner: str) -> dict[str, str]:
    data = api.data("query($id: ID!) { customer(id: $id) { metafields(first: 10) { nodes { key value } } } }",
                    {"id": owner})
    return {m["key"]: m["value"] for m in data["customer"]["metafields"]["nodes"]}


def test_metafields_delete_removes_what_exists_and_answers_null_for_the_rest(api: AdminApi):
    owner = customer_with_fields(api)
    answer = api.data(DELETE_METAFIELDS, {"m": [
        {"ownerId": owner, "namespace": "$app", "key": "welcome_code"},
        {"ownerId": owner, "namespace": "$app", "key": "welcome_code_expires_at"},  # never set
        {"ownerId": "gid://shopify/Customer/404", "namespace": "$app", "key": "welcome_code"},
    ]})["metafieldsDelete"]
    assert answer["userErrors"] == []
    assert answer["deletedMetafields"] == [
        {"ownerId": owner, "namespace": f"app--{CLIENT_ID}", "key": "welcome_code"}, None, None]
    assert customer_fields(api, owner) == {"welcome_code_url": "https://a.test/x"}


def test_metafields_delete_costs_one_mutation(api: AdminApi):
    owner = customer_with_fields(api)
    body = api.body(DELETE_METAFIELDS, {"m": [{"ownerId": owner, "namespace": "$app", "key": "welcome_code"}]})
    assert body["extensions"]["cost"]["actualQueryCost"] == 10


@pytest.mark.parametrize(("item", "field"), [
    ({"namespace": "app--someone-else", "key": "welcome_code"}, ["metafields", "0", "namespace"]),
    ({"ownerId": "nonsense", "namespace": "$app", "key": "welcome_code"}, ["metafields", "0", "ownerId"]),
])
def test_a_refused_identifier_deletes_nothing(api: AdminApi, item: dict[str, str], field: list[str]):
    owner = customer_with_fields(api)
    answer = api.data(DELETE_METAFIELDS, {"m": [{"ownerId": owner, **item},
                                                {"ownerId": owner, "namespace": "$app", "key": "welcome_code"}]})
    assert answer["metafieldsDelete"]["deletedMetafields"] is None
    assert [e["field"] for e in answer["metafieldsDelete"]["userErrors"]] == [field]
    assert "welcome_code" in customer_fields(api, owner)
