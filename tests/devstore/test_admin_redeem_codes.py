"""Many redeem codes on one discount, as Shopify runs them: ``discountRedeemCodeBulkAdd`` (asynchronous),
``discountRedeemCodeBulkCreation`` to follow it, and the codes it adds, found like any other code.

The expected answers are Shopify's, as live captures show them (see ``devstore.admin.redeem_codes``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from unittest.mock import ANY

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select
from werkzeug.serving import make_server

from devstore import create_app
from devstore.errors import CodeRefused
from devstore.models import DiscountCode, Installation, Job, RedeemCodeBulkCreation, now
from devstore.state import DevstoreConfig
from tests.devstore.factories import make_discount
from tests.devstore.test_admin_support import CLIENT_ID, OTHER_SHOP, SHOP, TOKEN, VERSION, AdminApi, FakeClock, install

# Jobs are due a minute after they start, so a test sees them pending however slow the machine, and
# ``run_jobs`` makes them due when the test wants "a moment later" to have come.
JOB_SECONDS = 60.0

BULK_ADD = """
mutation add($discountId: ID!, $codes: [DiscountRedeemCodeInput!]!) {
  discountRedeemCodeBulkAdd(discountId: $discountId, codes: $codes) {
    bulkCreation {
      id done codesCount importedCount failedCount
      codes(first: 10) { nodes { code errors { field message code extraInfo } discountRedeemCode { id code } } }
    }
    userErrors { field message code extraInfo }
  }
}
"""
CREATION = """
query poll($id: ID!) {
  discountRedeemCodeBulkCreation(id: $id) {
    id done codesCount importedCount failedCount createdAt discountCode { id }
    codes(first: 250) { nodes { code errors { field message code extraInfo } discountRedeemCode { id code } } }
  }
}
"""
POLL = "query poll($id: ID!) { discountRedeemCodeBulkCreation(id: $id) { done importedCount failedCount } }"
BY_CODE = "query byCode($code: String!) { codeDiscountNodeByCode(code: $code) { id } }"
CODES = """
query codes($id: ID!) {
  codeDiscountNode(id: $id) {
    codeDiscount { ... on DiscountCodeBasic { codes(first: 250) { nodes { id code } } codesCount { count precision } } }
  }
}
"""


def build(job_seconds: float = JOB_SECONDS) -> Flask:
    app = create_app(DevstoreConfig(api_key=CLIENT_ID, api_secret="s" * 32, deliver_webhooks=False,
                                    job_seconds=job_seconds))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def api() -> Iterator[AdminApi]:
    app = build()
    clock = FakeClock()
    app.extensions["devstore_admin"].buckets.clock = clock
    install(app.extensions["devstore"])
    install(app.extensions["devstore"], OTHER_SHOP, token="shpat_other")  # noqa: S106
    yield AdminApi(app, app.test_client(), app.extensions["devstore"], clock)
    app.extensions["devstore"].engine.dispose()


def node(number: int) -> str:
    return f"gid://shopify/DiscountCodeNode/{number}"


def add(api: AdminApi, discount: int | str, codes: list[str], **kwargs: Any) -> dict[str, Any]:
    target = discount if isinstance(discount, str) else node(discount)
    return api.data(BULK_ADD, {"discountId": target, "codes": [{"code": c} for c in codes]},
                    **kwargs)["discountRedeemCodeBulkAdd"]


def run_jobs(api: AdminApi) -> None:
    """Let "a moment later" come: every pending job is due now, and the next look at the store runs it."""
    with api.state.session() as session:
        for job in session.scalars(select(Job).where(Job.done_at.is_(None))):
            job.run_at = now() - timedelta(seconds=1)


def poll(api: AdminApi, creation_id: str, **kwargs: Any) -> dict[str, Any]:
    """The creation once its moment has come, read in full (a client polls until ``done``)."""
    run_jobs(api)
    assert api.data(POLL, {"id": creation_id}, **kwargs)["discountRedeemCodeBulkCreation"] in (
        None, {"done": True, "importedCount": ANY, "failedCount": ANY})
    return api.data(CREATION, {"id": creation_id}, **kwargs)["discountRedeemCodeBulkCreation"]


def outcome(creation: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(code, its error message or None) for each code of a finished creation."""
    return [(c["code"], c["errors"][0]["message"] if c["errors"] else None) for c in creation["codes"]["nodes"]]


def codes_of(api: AdminApi, discount: int) -> set[str]:
    """The discount's codes (``codes`` is ordered by id, and ids are not given in sequence)."""
    data = api.data(CODES, {"id": node(discount)})["codeDiscountNode"]["codeDiscount"]
    assert data["codesCount"] == {"count": len(data["codes"]["nodes"]), "precision": "EXACT"}
    return {c["code"] for c in data["codes"]["nodes"]}


# --- discountRedeemCodeBulkAdd ------------------------------------------------------------------------

def test_bulk_add_answers_a_pending_creation_and_adds_the_codes_a_moment_later(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE", usage_limit=1)
    started = add(api, pool, ["FRIEND-1", "FRIEND-2", "FRIEND-3"])
    assert started["userErrors"] == []
    creation = started["bulkCreation"]
    assert creation["id"].startswith("gid://shopify/DiscountRedeemCodeBulkCreation/")
    # Shopify's immediate answer: queued, every code listed, nothing judged yet.
    assert (creation["done"], creation["codesCount"], creation["importedCount"], creation["failedCount"]) == \
        (False, 3, 0, 0)
    assert creation["codes"]["nodes"] == [{"code": f"FRIEND-{n}", "errors": [], "discountRedeemCode": None}
                                          for n in (1, 2, 3)]
    assert api.data(BY_CODE, {"code": "FRIEND-1"})["codeDiscountNodeByCode"] is None  # not yet

    done = poll(api, creation["id"])
    assert (done["done"], done["codesCount"], done["importedCount"], done["failedCount"]) == (True, 3, 3, 0)
    assert done["discountCode"] == {"id": node(pool)}
    assert outcome(done) == [("FRIEND-1", None), ("FRIEND-2", None), ("FRIEND-3", None)]
    added = [c["discountRedeemCode"] for c in done["codes"]["nodes"]]
    assert all(a["id"].startswith("gid://shopify/DiscountRedeemCode/") for a in added)
    assert [a["code"] for a in added] == ["FRIEND-1", "FRIEND-2", "FRIEND-3"]
    assert codes_of(api, pool) == {"POOL-BASE", "FRIEND-1", "FRIEND-2", "FRIEND-3"}


def test_a_code_already_on_the_store_fails_whatever_its_discount_or_case(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE")
    make_discount(api.state, "Welcome-7QX2")  # another discount's code
    first = poll(api, add(api, pool, ["EARLY-1"])["bulkCreation"]["id"])
    assert first["importedCount"] == 1

    done = poll(api, add(api, pool, ["welcome-7qx2", "pool-base", "early-1", "FRESH-1"])["bulkCreation"]["id"])
    taken = "must be unique. Please try a different code."
    assert outcome(done) == [("welcome-7qx2", taken), ("pool-base", taken), ("early-1", taken), ("FRESH-1", None)]
    assert (done["importedCount"], done["failedCount"]) == (1, 3)
    # Shopify's shape for a code's error: on field ["code"], with no error code.
    assert done["codes"]["nodes"][0]["errors"] == [{"field": ["code"], "message": taken, "code": None,
                                                    "extraInfo": None}]
    assert [c["discountRedeemCode"] for c in done["codes"]["nodes"][:3]] == [None, None, None]
    assert codes_of(api, pool) == {"POOL-BASE", "EARLY-1", "FRESH-1"}


def test_codes_repeated_within_one_call_are_added_once(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE")
    done = poll(api, add(api, pool, ["TWIN", "OTHER", "twin", "TWIN"])["bulkCreation"]["id"])
    repeated = "Codes must be unique within BulkDiscountCodeCreation"
    assert outcome(done) == [("TWIN", None), ("OTHER", None), ("twin", repeated), ("TWIN", repeated)]
    assert (done["codesCount"], done["importedCount"], done["failedCount"]) == (4, 2, 2)
    assert codes_of(api, pool) == {"POOL-BASE", "TWIN", "OTHER"}


@pytest.mark.parametrize(("code", "message"), [
    ("", "is too short (minimum is 1 character)"),
    ("TWO\nLINES", "cannot contain newline characters."),
    ("CARRIAGE\rRETURN", "cannot contain newline characters."),
    ("X" * 256, "is too long (maximum is 255 characters)"),
])
def test_a_malformed_code_fails_on_its_own(api: AdminApi, code: str, message: str):
    pool = make_discount(api.state, "POOL-BASE")
    done = poll(api, add(api, pool, [code, "GOOD-1"])["bulkCreation"]["id"])
    assert outcome(done) == [(code, message), ("GOOD-1", None)]
    assert codes_of(api, pool) == {"POOL-BASE", "GOOD-1"}


def test_the_longest_code_is_255_characters(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE")
    done = poll(api, add(api, pool, ["Y" * 255])["bulkCreation"]["id"])
    assert outcome(done) == [("Y" * 255, None)]


@pytest.mark.parametrize(("discount", "codes", "error"), [
    ("gid://shopify/DiscountCodeNode/1", ["ABC"], (["discountId"], "Code discount does not exist.", "INVALID")),
    ("gid://shopify/Customer/1", ["ABC"], (["discountId"], "Code discount does not exist.", "INVALID")),
    (None, [], (["codes"], "Codes can't be blank", "BLANK")),
])
def test_bad_arguments_are_user_errors_and_create_nothing(api: AdminApi, discount: str | None, codes: list[str],
                                                          error: tuple[list[str], str, str]):
    pool = make_discount(api.state, "POOL-BASE")
    answer = add(api, discount or node(pool), codes)
    assert answer["bulkCreation"] is None
    assert [(e["field"], e["message"], e["code"]) for e in answer["userErrors"]] == [error]
    run_jobs(api)
    assert api.data(BY_CODE, {"code": "ABC"})["codeDiscountNodeByCode"] is None


def test_another_stores_discount_does_not_exist_here(api: AdminApi):
    theirs = make_discount(api.state, "THEIRS", shop=OTHER_SHOP)
    answer = add(api, theirs, ["SNEAKY"])
    assert answer["userErrors"][0]["message"] == "Code discount does not exist."


def test_more_than_250_codes_is_shopifys_input_limit(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE")
    body = api.body(BULK_ADD, {"discountId": node(pool), "codes": [{"code": f"C-{n}"} for n in range(251)]})
    assert body["data"] is None
    assert body["errors"][0]["message"] == "The input array size of 251 is greater than the maximum allowed of 250."
    assert body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert body["errors"][0]["path"] == ["discountRedeemCodeBulkAdd", "codes"]  # as Shopify answers
    run_jobs(api)
    assert api.data(BY_CODE, {"code": "C-0"})["codeDiscountNodeByCode"] is None


def test_250_codes_in_one_call(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE")
    done = poll(api, add(api, pool, [f"BATCH-{n:03d}" for n in range(250)])["bulkCreation"]["id"])
    assert (done["codesCount"], done["importedCount"], done["failedCount"]) == (250, 250, 0)
    assert len(done["codes"]["nodes"]) == 250
    count = api.data("query($id: ID!) { codeDiscountNode(id: $id) { codeDiscount { ... on DiscountCodeBasic "
                     "{ codesCount { count } } } } }", {"id": node(pool)})
    assert count["codeDiscountNode"]["codeDiscount"]["codesCount"] == {"count": 251}


def test_a_code_taken_between_the_call_and_its_job_fails(api: AdminApi):
    """The job judges the store as it is when it runs, not when the call was made."""
    pool = make_discount(api.state, "POOL-BASE")
    started = add(api, pool, ["RACE-1", "RACE-2"])
    created = api.data('mutation($d: DiscountCodeBasicInput!) { discountCodeBasicCreate(basicCodeDiscount: $d) '
                       '{ userErrors { code } } }', {"d": {
                           "title": "Solo", "code": "race-1", "startsAt": "2026-01-01T00:00:00Z",
                           "customerGets": {"value": {"percentage": 0.1}, "items": {"all": True}}}})
    assert created["discountCodeBasicCreate"]["userErrors"] == []
    done = poll(api, started["bulkCreation"]["id"])
    assert outcome(done) == [("RACE-1", "must be unique. Please try a different code."), ("RACE-2", None)]


def test_bulk_add_needs_write_discounts(api: AdminApi):
    with api.state.session() as session:
        session.scalars(select(Installation).where(Installation.shop == OTHER_SHOP)).one().scopes = "read_discounts"
    theirs = make_discount(api.state, "THEIRS", shop=OTHER_SHOP)
    body = api.body(BULK_ADD, {"discountId": node(theirs), "codes": [{"code": "X"}]},
                    token="shpat_other", shop=OTHER_SHOP)  # noqa: S106
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"


# --- discountRedeemCodeBulkCreation ---------------------------------------------------------------------

def test_the_creation_reads_pending_until_its_job_has_run_polled_or_not(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE")
    creation_id = add(api, pool, ["LATER-1"])["bulkCreation"]["id"]
    assert api.data(POLL, {"id": creation_id})["discountRedeemCodeBulkCreation"] == {
        "done": False, "importedCount": 0, "failedCount": 0}
    run_jobs(api)
    assert api.data(BY_CODE, {"code": "later-1"})["codeDiscountNodeByCode"] == {"id": node(pool)}
    assert api.data(POLL, {"id": creation_id})["discountRedeemCodeBulkCreation"] == {
        "done": True, "importedCount": 1, "failedCount": 0}


def test_the_job_runs_by_itself_a_moment_later():
    """Real time, no help: a store whose jobs wait 0.2 s has added the codes once that has passed."""
    app = build(job_seconds=0.2)
    install(app.extensions["devstore"])
    api = AdminApi(app, app.test_client(), app.extensions["devstore"], FakeClock())
    try:
        pool = make_discount(api.state, "POOL-BASE")
        creation_id = add(api, pool, ["BY-ITSELF"])["bulkCreation"]["id"]
        time.sleep(0.4)
        assert api.data(BY_CODE, {"code": "BY-ITSELF"})["codeDiscountNodeByCode"] == {"id": node(pool)}
        assert api.data(POLL, {"id": creation_id})["discountRedeemCodeBulkCreation"]["done"] is True
    finally:
        app.extensions["devstore"].engine.dispose()


def test_the_creation_pages_its_codes_in_the_order_given(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE")
    creation_id = poll(api, add(api, pool, ["C", "A", "B"])["bulkCreation"]["id"])["id"]
    query = ("query($id: ID!, $after: String) { discountRedeemCodeBulkCreation(id: $id) { codes(first: 2, "
             "after: $after) { nodes { code } pageInfo { hasNextPage endCursor } } } }")
    first = api.data(query, {"id": creation_id})["discountRedeemCodeBulkCreation"]["codes"]
    assert [c["code"] for c in first["nodes"]] == ["C", "A"] and first["pageInfo"]["hasNextPage"]
    rest = api.data(query, {"id": creation_id, "after": first["pageInfo"]["endCursor"]})
    assert [c["code"] for c in rest["discountRedeemCodeBulkCreation"]["codes"]["nodes"]] == ["B"]


def test_the_creation_is_a_node(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE")
    creation_id = add(api, pool, ["NODE-1"])["bulkCreation"]["id"]
    data = api.data("query($id: ID!) { node(id: $id) { id ... on DiscountRedeemCodeBulkCreation { codesCount } } }",
                    {"id": creation_id})
    assert data["node"] == {"id": creation_id, "codesCount": 1}


@pytest.mark.parametrize("creation_id", [
    "gid://shopify/DiscountRedeemCodeBulkCreation/1",
    "gid://shopify/DiscountCodeNode/1",
])
def test_an_unknown_creation_is_null(api: AdminApi, creation_id: str):
    body = api.body(POLL, {"id": creation_id})
    assert body["data"] == {"discountRedeemCodeBulkCreation": None} and "errors" not in body


def test_a_malformed_creation_id_is_shopifys_invalid_global_id(api: AdminApi):
    body = api.body(POLL, {"id": "nonsense"})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_GLOBAL_ID"


def test_another_stores_creation_is_out_of_reach(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE")
    creation_id = add(api, pool, ["MINE-1"])["bulkCreation"]["id"]
    theirs = api.data(POLL, {"id": creation_id}, token="shpat_other", shop=OTHER_SHOP)  # noqa: S106
    assert theirs["discountRedeemCodeBulkCreation"] is None


def test_the_creation_is_not_a_job(api: AdminApi):
    """Its work runs like a job, but Shopify reports it only through the creation."""
    pool = make_discount(api.state, "POOL-BASE")
    add(api, pool, ["NOT-A-JOB"])
    with api.state.session() as session:
        job_id = session.scalars(select(Job.id)).one()
    answer = api.data("query($id: ID!) { job(id: $id) { id } }", {"id": f"gid://shopify/Job/{job_id}"})
    assert answer["job"] is None


def test_a_discount_deleted_before_the_job_runs_fails_every_code(api: AdminApi):
    pool = make_discount(api.state, "POOL-BASE")
    creation_id = add(api, pool, ["ORPHAN-1"])["bulkCreation"]["id"]
    api.data('mutation($id: ID!) { discountCodeDelete(id: $id) { userErrors { code } } }', {"id": node(pool)})
    done = poll(api, creation_id)
    assert outcome(done) == [("ORPHAN-1", "Code discount does not exist.")]
    assert done["discountCode"] is None and done["failedCount"] == 1
    assert api.data(BY_CODE, {"code": "ORPHAN-1"})["codeDiscountNodeByCode"] is None


# --- the added codes at checkout ----------------------------------------------------------------------------

def test_each_added_code_is_single_use_at_checkout(api: AdminApi):
    """A pool discount with ``usageLimit: 1``: every code it holds works once, whatever the others did."""
    pool = make_discount(api.state, "POOL-BASE", usage_limit=1, applies_once_per_customer=True)
    poll(api, add(api, pool, ["FRIEND-A", "FRIEND-B", "FRIEND-C"])["bulkCreation"]["id"])
    for code in ("friend-a", "FRIEND-B", "FRIEND-C"):
        api.order(codes=(code,), customer_id=api.customer(f"{code.lower()}@example.com"))
    with pytest.raises(CodeRefused) as refused:
        api.order(codes=("FRIEND-B",), customer_id=api.customer("late@example.com"))
    assert refused.value.rule == "usage_limit"
    data = api.data("query($id: ID!) { codeDiscountNode(id: $id) { codeDiscount { ... on DiscountCodeBasic { "
                    "asyncUsageCount codes(first: 10) { nodes { code asyncUsageCount } } } } } }", {"id": node(pool)})
    discount = data["codeDiscountNode"]["codeDiscount"]
    assert discount["asyncUsageCount"] == 3
    assert {c["code"]: c["asyncUsageCount"] for c in discount["codes"]["nodes"]} == {
        "POOL-BASE": 0, "FRIEND-A": 1, "FRIEND-B": 1, "FRIEND-C": 1}


# --- discountCodeRedeemCodeBulkDelete --------------------------------------------------------------------

DELETE_CODES = """
mutation drop($discountId: ID!, $ids: [ID!], $search: String, $savedSearchId: ID) {
  discountCodeRedeemCodeBulkDelete(discountId: $discountId, ids: $ids, search: $search, savedSearchId: $savedSearchId) {
    job { id done }
    userErrors { field message code extraInfo }
  }
}
"""
JOB = "query poll($id: ID!) { job(id: $id) { id done } }"


def pool_with_codes(api: AdminApi, codes: list[str]) -> tuple[int, dict[str, str]]:
    """A discount holding ``codes`` (added in bulk) besides its own; returns it and the codes' redeem code ids."""
    pool = make_discount(api.state, "POOL-BASE", usage_limit=1)
    done = poll(api, add(api, pool, codes)["bulkCreation"]["id"])
    return pool, {c["code"]: c["discountRedeemCode"]["id"] for c in done["codes"]["nodes"]}


def delete_codes(api: AdminApi, discount: int | str, **variables: Any) -> dict[str, Any]:
    target = discount if isinstance(discount, str) else node(discount)
    return api.data(DELETE_CODES, {"discountId": target, **variables})["discountCodeRedeemCodeBulkDelete"]


def finish(api: AdminApi, job_id: str) -> dict[str, Any]:
    """The job once its moment has come, as ``job(id:)`` reads it."""
    run_jobs(api)
    return api.data(JOB, {"id": job_id})["job"]


def test_bulk_delete_removes_the_codes_a_moment_later_and_keeps_the_discount(api: AdminApi):
    pool, ids = pool_with_codes(api, ["GONE-1", "GONE-2", "STAYS-1"])
    started = delete_codes(api, pool, ids=[ids["GONE-1"], ids["GONE-2"]])
    assert started["userErrors"] == [] and started["job"]["done"] is False
    assert started["job"]["id"].startswith("gid://shopify/Job/")
    assert api.data(BY_CODE, {"code": "GONE-1"})["codeDiscountNodeByCode"] == {"id": node(pool)}  # not yet

    assert finish(api, started["job"]["id"])["done"] is True
    assert api.data(BY_CODE, {"code": "gone-1"})["codeDiscountNodeByCode"] is None
    assert api.data(BY_CODE, {"code": "GONE-2"})["codeDiscountNodeByCode"] is None
    assert codes_of(api, pool) == {"POOL-BASE", "STAYS-1"}


def test_a_deleted_code_is_free_again_and_its_creation_shows_it_gone(api: AdminApi):
    pool, ids = pool_with_codes(api, ["REUSED-1"])
    finish(api, delete_codes(api, pool, ids=[ids["REUSED-1"]])["job"]["id"])
    with api.state.session() as session:
        creation = session.scalars(select(RedeemCodeBulkCreation.id)).one()
    first = poll(api, f"gid://shopify/DiscountRedeemCodeBulkCreation/{creation}")
    assert first["codes"]["nodes"][0]["discountRedeemCode"] is None and first["importedCount"] == 1
    again = poll(api, add(api, pool, ["REUSED-1"])["bulkCreation"]["id"])
    assert outcome(again) == [("REUSED-1", None)]


def test_a_used_code_can_be_deleted_and_the_order_keeps_it(api: AdminApi):
    pool, ids = pool_with_codes(api, ["USED-1"])
    order = api.order(codes=("USED-1",))
    finish(api, delete_codes(api, pool, ids=[ids["USED-1"]])["job"]["id"])
    data = api.data("query($id: ID!) { order(id: $id) { discountCodes } }", {"id": f"gid://shopify/Order/{order}"})
    assert data["order"]["discountCodes"] == ["USED-1"]
    assert api.data(BY_CODE, {"code": "USED-1"})["codeDiscountNodeByCode"] is None


def test_deleting_twice_or_another_discounts_code_is_skipped_not_an_error(api: AdminApi):
    pool, ids = pool_with_codes(api, ["ONCE-1"])
    other = make_discount(api.state, "ELSEWHERE")
    with api.state.session() as session:
        elsewhere = session.scalars(select(DiscountCode.id).where(DiscountCode.discount_id == other)).one()
    first = delete_codes(api, pool, ids=[ids["ONCE-1"], ids["ONCE-1"], f"gid://shopify/DiscountRedeemCode/{elsewhere}"])
    assert finish(api, first["job"]["id"])["done"]
    again = delete_codes(api, pool, ids=[ids["ONCE-1"], "gid://shopify/DiscountRedeemCode/123"])
    assert again["userErrors"] == [] and finish(api, again["job"]["id"])["done"]
    assert api.data(BY_CODE, {"code": "ELSEWHERE"})["codeDiscountNodeByCode"] == {"id": node(other)}


@pytest.mark.parametrize(("variables", "error"), [
    ({}, (None, "Missing expected argument key: 'ids', 'search' or 'saved_search_id'.", "MISSING_ARGUMENT")),
    ({"ids": ["gid://shopify/DiscountRedeemCode/1"], "search": "code:ANY"},
     (None, "Only one of 'ids', 'search' or 'saved_search_id' is allowed.", "TOO_MANY_ARGUMENTS")),
    ({"ids": []}, (None, "Something went wrong, please try again.", None)),
    ({"search": "   "}, (["search"], "'Search' can't be blank.", "BLANK")),
    ({"savedSearchId": "gid://shopify/SavedSearch/0"}, (["savedSearchId"], "Invalid 'saved_search_id'.", "INVALID")),
    ({"search": "code:ANY"}, (["search"], "devstore does not support searching redeem codes: give ids", "INVALID")),
    ({"ids": ["gid://shopify/DiscountCodeNode/1"]},
     (["ids"], "Invalid id: gid://shopify/DiscountCodeNode/1 is not a redeem code", "INVALID")),
])
def test_bad_arguments_are_shopifys_user_errors_and_start_no_job(api: AdminApi, variables: dict[str, Any],
                                                                 error: tuple[list[str] | None, str, str | None]):
    pool = make_discount(api.state, "POOL-BASE")
    answer = delete_codes(api, pool, **variables)
    assert answer["job"] is None
    assert [(e["field"], e["message"], e["code"]) for e in answer["userErrors"]] == [error]


@pytest.mark.parametrize("discount", ["gid://shopify/DiscountCodeNode/0", "gid://shopify/Customer/1"])
def test_an_unknown_discount_does_not_exist(api: AdminApi, discount: str):
    answer = delete_codes(api, discount, ids=["gid://shopify/DiscountRedeemCode/1"])
    assert answer["job"] is None
    assert answer["userErrors"] == [{"field": ["discountId"], "message": "Code discount does not exist.",
                                     "code": "INVALID", "extraInfo": None}]


def test_another_stores_codes_are_out_of_reach(api: AdminApi):
    theirs = make_discount(api.state, "THEIRS", shop=OTHER_SHOP)
    assert delete_codes(api, theirs, ids=["gid://shopify/DiscountRedeemCode/1"])["userErrors"][0]["code"] == "INVALID"


def test_more_than_250_ids_is_shopifys_input_limit(api: AdminApi):
    pool, ids = pool_with_codes(api, ["SAFE-1"])
    body = api.body(DELETE_CODES, {"discountId": node(pool), "ids": [ids["SAFE-1"]] * 251})
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    run_jobs(api)
    assert api.data(BY_CODE, {"code": "SAFE-1"})["codeDiscountNodeByCode"] is not None


def test_bulk_delete_of_codes_needs_write_discounts(api: AdminApi):
    with api.state.session() as session:
        session.scalars(select(Installation).where(Installation.shop == OTHER_SHOP)).one().scopes = "read_discounts"
    theirs = make_discount(api.state, "THEIRS", shop=OTHER_SHOP)
    body = api.body(DELETE_CODES, {"discountId": node(theirs), "ids": ["gid://shopify/DiscountRedeemCode/1"]},
                    token="shpat_other", shop=OTHER_SHOP)  # noqa: S106
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"


# --- cost, as Shopify charges it ---------------------------------------------------------------------------

# The documents of the live captures (see ``devstore.admin.cost``), with what Shopify charged for them.
CAPTURED_READ = """
query read($id: ID!) {
  discountRedeemCodeBulkCreation(id: $id) {
    done codesCount importedCount failedCount
    codes(first: 10) { nodes { code errors { field message code extraInfo } discountRedeemCode { code } } }
  }
}
"""


def cost(body: dict[str, Any]) -> tuple[int, int]:
    charged = body["extensions"]["cost"]
    return charged["requestedQueryCost"], charged["actualQueryCost"]


def settle(api: AdminApi, creation_id: str) -> dict[str, Any]:
    """The captured read of a creation once it is done."""
    poll(api, creation_id)
    return api.body(CAPTURED_READ, {"id": creation_id})


def test_bulk_add_and_its_creation_cost_what_shopify_charged(api: AdminApi):
    pool = make_discount(api.state, "HAR784BASE")
    make_discount(api.state, "HAR784CROSS")

    invalid = api.body(BULK_ADD, {"discountId": node(pool), "codes": [{"code": c} for c in (
        "", "NL\nBAD", "CR\rBAD", "X" * 256, "HAR784DUP", "HAR784DUP", "HAR784OK")]})
    assert cost(invalid) == (24, 21)
    assert cost(settle(api, invalid["data"]["discountRedeemCodeBulkAdd"]["bulkCreation"]["id"])) == (15, 12)

    conflicts = api.body(BULK_ADD, {"discountId": node(pool), "codes": [{"code": c} for c in (
        "HAR784BASE", "HAR784CROSS", "HAR784FRESH")]})
    assert cost(conflicts) == (24, 16)
    read = settle(api, conflicts["data"]["discountRedeemCodeBulkAdd"]["bulkCreation"]["id"])
    assert cost(read) == (15, 7)
    assert read["data"]["discountRedeemCodeBulkCreation"]["importedCount"] == 1


@pytest.mark.parametrize(("discount", "codes"), [("gid://shopify/DiscountCodeNode/0", ["ABC"]), (None, [])])
def test_a_refused_bulk_add_costs_the_mutation_alone(api: AdminApi, discount: str | None, codes: list[str]):
    pool = make_discount(api.state, "POOL-BASE")
    body = api.body(BULK_ADD, {"discountId": discount or node(pool), "codes": [{"code": c} for c in codes]})
    assert cost(body) == (24, 10)


def test_a_pool_of_250_codes_costs_11_points(api: AdminApi):
    """What a pool top-up pays when nothing fails: one mutation and one poll, 0.044 points a code."""
    pool = make_discount(api.state, "POOL-BASE", usage_limit=1)
    api.http.delete(f"/_devstore/stores/{SHOP}/graphql_usage")
    started = api.body("mutation($id: ID!, $codes: [DiscountRedeemCodeInput!]!) { discountRedeemCodeBulkAdd("
                       "discountId: $id, codes: $codes) { bulkCreation { id } userErrors { field message code } } }",
                       {"id": node(pool), "codes": [{"code": f"TOPUP-{n:03d}"} for n in range(250)]})
    assert cost(started) == (10, 10)
    run_jobs(api)
    polled = api.body(POLL, {"id": started["data"]["discountRedeemCodeBulkAdd"]["bulkCreation"]["id"]})
    assert cost(polled) == (1, 1)
    assert polled["data"]["discountRedeemCodeBulkCreation"] == {"done": True, "importedCount": 250, "failedCount": 0}
    assert api.http.get(f"/_devstore/stores/{SHOP}/graphql_usage").get_json()["points"] == 11


def test_a_redeem_code_deletion_costs_one_mutation(api: AdminApi):
    pool, ids = pool_with_codes(api, ["PRICED-1"])
    body = api.body(DELETE_CODES, {"discountId": node(pool), "ids": [ids["PRICED-1"]]})
    assert cost(body) == (10, 10)


# --- uniqueness under concurrent calls, over real HTTP ------------------------------------------------

@pytest.fixture
def served(api: AdminApi) -> Iterator[str]:
    """The devstore on a real loopback port (threaded, as ``make run`` serves it); yields its GraphQL URL."""
    server = make_server("127.0.0.1", 0, api.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/stores/{SHOP}/admin/api/{VERSION}/graphql.json"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


OUTCOMES = """query outcomes($id: ID!) { discountRedeemCodeBulkCreation(id: $id) {
  done importedCount failedCount codes(first: 40) { nodes { code discountRedeemCode { id } } } } }"""


def post(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(url, json={"query": query, "variables": variables},
                             headers={"X-Shopify-Access-Token": TOKEN}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def test_concurrent_creations_never_add_one_code_twice(api: AdminApi, served: str):
    """Eight callers add overlapping codes (in any case) to two discounts at once: every code ends up on the
    store exactly once, and the creations' counts say which call got it."""
    pools = [make_discount(api.state, "POOL-A"), make_discount(api.state, "POOL-B")]
    wanted = [f"SHARED-{n:02d}" for n in range(40)]

    def one_call(index: int) -> str:
        codes = [c.lower() if index % 2 else c for c in random.Random(index).sample(wanted, len(wanted))]
        data = post(served, BULK_ADD, {"discountId": node(pools[index % 2]), "codes": [{"code": c} for c in codes]})
        return data["discountRedeemCodeBulkAdd"]["bulkCreation"]["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        creation_ids = list(pool.map(one_call, range(8)))
    run_jobs(api)
    with ThreadPoolExecutor(max_workers=8) as pool:
        finished = list(pool.map(lambda cid: post(served, OUTCOMES, {"id": cid})["discountRedeemCodeBulkCreation"],
                                 creation_ids))
    assert all(c["done"] for c in finished)
    assert sum(c["importedCount"] for c in finished) == len(wanted)
    assert sum(c["failedCount"] for c in finished) == 7 * len(wanted)
    imported = [c["code"].upper() for creation in finished for c in creation["codes"]["nodes"]
                if c["discountRedeemCode"] is not None]
    assert sorted(imported) == sorted(wanted)
    with api.state.session() as session:
        keys = session.execute(select(DiscountCode.code_key, func.count()).where(DiscountCode.shop == SHOP)
                               .group_by(DiscountCode.code_key)).all()
    assert all(n == 1 for _, n in keys) and {k for k, _ in keys} == {*wanted, "POOL-A", "POOL-B"}
