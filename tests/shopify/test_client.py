"""The Admin GraphQL client, with ``responses`` standing in for Shopify's Admin API."""

from __future__ import annotations

import json
import logging
import time

import pytest
import requests
import responses

from app.shopify import client as client_module
from app.shopify.client import (
    AccessDenied,
    AdminAPIError,
    AdminClient,
    AdminUnavailable,
    GraphQLErrors,
    Throttled,
    UserErrors,
    document,
)
from app.shopify.throttle import ShopBuckets
from tests.conftest import make_settings

GRAPHQL_URL = "https://demo.myshopify.com/admin/api/2026-10/graphql.json"
VERSION = {"X-Shopify-API-Version": "2026-10"}
CREATED = {"webhookSubscriptionCreate": {
    "webhookSubscription": {"id": "gid://shopify/WebhookSubscription/8589934632", "topic": "APP_UNINSTALLED",
                            "uri": "https://oncecode.test/webhooks"},
    "userErrors": []}}
THROTTLED = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
             "extensions": {"cost": {"requestedQueryCost": 10, "actualQueryCost": None,
                                     "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 0,
                                                        "restoreRate": 100.0}}}}
CREATE_VARIABLES = {"topic": "APP_UNINSTALLED",
                    "webhookSubscription": {"uri": "https://oncecode.test/webhooks", "format": "JSON"}}


@pytest.fixture
def admin() -> AdminClient:
    return AdminClient(make_settings(), "demo.myshopify.com", "shpat_client_token")


@pytest.fixture
def api():  # type: ignore[no-untyped-def]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "RETRY_DELAYS", (0, 0))


def sent(call: responses.Call) -> dict:
    return json.loads(call.request.body)


def test_query_returns_data_and_sends_token_document_and_variables(admin, api):
    api.post(GRAPHQL_URL, json={"data": CREATED}, headers=VERSION)

    payload = admin.mutate("webhookSubscriptionCreate", CREATE_VARIABLES)

    assert payload == CREATED["webhookSubscriptionCreate"]
    [call] = api.calls
    assert call.request.headers["X-Shopify-Access-Token"] == "shpat_client_token"
    assert call.request.headers["Content-Type"] == "application/json"
    assert sent(call) == {"query": document("webhookSubscriptionCreate"), "variables": CREATE_VARIABLES}
    assert "mutation webhookSubscriptionCreate(" in sent(call)["query"]
    assert call.request.req_kwargs["timeout"]


def test_query_returns_only_data_and_remembers_the_cost(admin, api):
    cost = {"requestedQueryCost": 2, "actualQueryCost": 2,
            "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1998, "restoreRate": 100.0}}
    api.post(GRAPHQL_URL, json={"data": {"webhookSubscriptions": {"nodes": []}}, "extensions": {"cost": cost}},
             headers=VERSION)

    assert admin.query("webhookSubscriptions", {"first": 10}) == {"webhookSubscriptions": {"nodes": []}}
    assert admin.last_cost == cost


def test_store_base_url_decides_where_the_client_posts(api):
    local = "http://127.0.0.1:8001/stores/demo.myshopify.com/admin/api/2026-10/graphql.json"
    api.post(local, json={"data": {"webhookSubscriptions": {"nodes": []}}})
    settings = make_settings(shopify_store_base_url="http://127.0.0.1:8001/stores/{shop}")

    AdminClient(settings, "demo.myshopify.com", "t").query("webhookSubscriptions", {"first": 1})

    assert api.calls[0].request.url == local


def test_top_level_errors_raise_graphql_errors(admin, api):
    errors = [{"message": "Field 'nope' doesn't exist on type 'QueryRoot'",
               "locations": [{"line": 1, "column": 3}], "extensions": {"code": "undefinedField"}}]
    api.post(GRAPHQL_URL, json={"errors": errors})

    with pytest.raises(GraphQLErrors, match="doesn't exist") as caught:
        admin.query("webhookSubscriptions", {"first": 1})

    assert caught.value.errors == errors
    assert caught.value.transient is False
    assert len(api.calls) == 1  # a broken document is not retried


def throttled(requested: int = 10, available: int = 0, rate: float = 100.0) -> dict:
    body = json.loads(json.dumps(THROTTLED))
    body["extensions"]["cost"]["requestedQueryCost"] = requested
    body["extensions"]["cost"]["throttleStatus"].update(currentlyAvailable=available, restoreRate=rate)
    return body


def answered(maximum: float = 1000.0, available: int = 990, requested: int = 12) -> dict:
    return {"data": {"webhookSubscriptions": {"nodes": []}},
            "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": 2, "throttleStatus": {
                "maximumAvailable": maximum, "currentlyAvailable": available, "restoreRate": 100.0}}}}


@pytest.fixture
def buckets(redis) -> ShopBuckets:  # type: ignore[no-untyped-def]
    return ShopBuckets(redis)


@pytest.fixture
def paced(buckets) -> AdminClient:  # type: ignore[no-untyped-def]
    return AdminClient(make_settings(), "demo.myshopify.com", "shpat_client_token", bucket=buckets)


def test_a_short_throttle_is_waited_out_and_the_call_succeeds(admin, api):
    api.post(GRAPHQL_URL, json=THROTTLED, status=200)  # THROTTLED comes with HTTP 200
    api.post(GRAPHQL_URL, json=answered())

    started = time.monotonic()
    assert admin.query("webhookSubscriptions", {"first": 1}) == {"webhookSubscriptions": {"nodes": []}}

    assert len(api.calls) == 2
    assert time.monotonic() - started >= 0.09  # (10 requested - 0 available) / 100 per second


def test_a_long_throttle_raises_throttled_with_the_wait(admin, api):
    api.post(GRAPHQL_URL, json=throttled(requested=500, available=100))

    with pytest.raises(Throttled) as caught:
        admin.query("webhookSubscriptions", {"first": 1})

    assert caught.value.retry_after == pytest.approx(4.0)  # (500 - 100) / 100: longer than a worker should wait
    assert caught.value.transient is True
    assert len(api.calls) == 1


def test_throttled_again_and_again_is_handed_back_to_the_job(admin, api):
    api.post(GRAPHQL_URL, json=THROTTLED)  # responses repeats it for every call

    with pytest.raises(Throttled):
        admin.query("webhookSubscriptions", {"first": 1})

    assert len(api.calls) == client_module.THROTTLED_ANSWERS


def test_a_short_429_is_waited_out(admin, api):
    api.post(GRAPHQL_URL, status=429, json={"errors": "Throttled"}, headers={"Retry-After": "0.1"})
    api.post(GRAPHQL_URL, json=answered())

    assert admin.query("webhookSubscriptions", {"first": 1}) == {"webhookSubscriptions": {"nodes": []}}
    assert len(api.calls) == 2


def test_a_long_429_raises_throttled(admin, api):
    api.post(GRAPHQL_URL, status=429, json={"errors": "Exceeded 2 calls per second for api client."},
             headers={"Retry-After": "5.0"})

    with pytest.raises(Throttled) as caught:
        admin.query("webhookSubscriptions", {"first": 1})

    assert caught.value.retry_after == 5.0
    assert len(api.calls) == 1


def test_the_wait_budget_is_shared_by_every_call_of_a_client(api):
    """A job makes many calls; together they may hold its worker only ``wait_budget`` seconds."""
    admin = AdminClient(make_settings(), "demo.myshopify.com", "shpat_client_token", wait_budget=0.25)
    api.post(GRAPHQL_URL, json=throttled(requested=25, available=10))  # 0.15 s to wait
    api.post(GRAPHQL_URL, json=answered())
    api.post(GRAPHQL_URL, json=throttled(requested=25, available=10))  # 0.15 s more: over the budget

    admin.query("webhookSubscriptions", {"first": 1})
    assert admin.waited == pytest.approx(0.15)
    with pytest.raises(Throttled):
        admin.query("webhookSubscriptions", {"first": 1})
    assert len(api.calls) == 3


@pytest.mark.parametrize(("headers", "retry_after"), [
    ({"Retry-After": "2.0"}, 2.0), ({}, 1.0), ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, 1.0),
    ({"Retry-After": "nan"}, 1.0), ({"Retry-After": "-5"}, 1.0),
])
def test_retry_after_header(headers, retry_after):
    response = requests.Response()
    response.headers.update(headers)
    assert client_module._retry_after_header(response) == retry_after


# --- with the shared bucket -------------------------------------------------------------------

def test_every_answer_is_observed_and_its_cost_remembered(paced, api, buckets):
    api.post(GRAPHQL_URL, json=answered(maximum=2000.0, available=1234, requested=102))

    paced.query("webhookSubscriptions", {"first": 100})

    assert buckets.state("demo.myshopify.com")["available"] == 1234
    assert buckets.state("demo.myshopify.com")["max"] == 2000
    assert buckets.estimate("webhookSubscriptions", 50) == 102


def test_a_throttled_answer_is_observed_before_the_call_gives_up(paced, api, buckets):
    api.post(GRAPHQL_URL, json=throttled(requested=500, available=7, rate=50.0))

    with pytest.raises(Throttled):
        paced.query("webhookSubscriptions", {"first": 1})

    state = buckets.state("demo.myshopify.com")
    assert (state["max"], state["available"], state["rate"]) == (1000, 7, 50)


def test_throttled_then_ok_is_paced_by_the_bucket_and_succeeds(paced, api, buckets):
    api.post(GRAPHQL_URL, json=throttled(requested=30, available=10, rate=100.0))
    api.post(GRAPHQL_URL, json=answered(available=5))

    assert paced.query("webhookSubscriptions", {"first": 1}) == {"webhookSubscriptions": {"nodes": []}}

    assert len(api.calls) == 2
    assert buckets.state("demo.myshopify.com")["available"] == 5


def test_a_call_waits_for_the_bucket_before_sending(paced, api, buckets):
    buckets.observe("demo.myshopify.com", {"maximumAvailable": 1000, "currentlyAvailable": 0, "restoreRate": 100})
    api.post(GRAPHQL_URL, json={"data": CREATED})

    started = time.monotonic()
    paced.mutate("webhookSubscriptionCreate", CREATE_VARIABLES)  # a mutation: 10 points, 0.1 s away

    assert time.monotonic() - started >= 0.09
    assert len(api.calls) == 1


def test_a_call_the_bucket_cannot_afford_soon_is_not_sent(paced, api, buckets):
    buckets.observe("demo.myshopify.com", {"maximumAvailable": 1000, "currentlyAvailable": 0, "restoreRate": 10})
    api.post(GRAPHQL_URL, json=answered())

    with pytest.raises(Throttled) as caught:
        paced.query("webhookSubscriptions", {"first": 1})  # a query never seen: 50 points, 5 s away

    assert caught.value.retry_after == pytest.approx(5.0, abs=0.05)
    assert len(api.calls) == 0  # nothing sent, and nothing taken from the bucket
    assert buckets.state("demo.myshopify.com")["available"] < 1


def test_5xx_is_retried_and_then_succeeds(admin, api, no_retry_wait):
    api.post(GRAPHQL_URL, status=503, body="Service Unavailable")
    api.post(GRAPHQL_URL, status=503, body="Service Unavailable")
    api.post(GRAPHQL_URL, json={"data": {"webhookSubscriptions": {"nodes": []}}})

    assert admin.query("webhookSubscriptions", {"first": 1}) == {"webhookSubscriptions": {"nodes": []}}
    assert len(api.calls) == 3


def test_timeouts_are_retried_and_then_succeed(admin, api, no_retry_wait):
    api.post(GRAPHQL_URL, body=requests.exceptions.ReadTimeout())
    api.post(GRAPHQL_URL, json={"data": {"webhookSubscriptions": {"nodes": []}}})

    assert admin.query("webhookSubscriptions", {"first": 1}) == {"webhookSubscriptions": {"nodes": []}}
    assert len(api.calls) == 2


@pytest.mark.parametrize("failure", [
    pytest.param({"status": 502, "body": "Bad Gateway"}, id="502"),
    pytest.param({"body": requests.exceptions.ConnectTimeout()}, id="connect-timeout"),
])
def test_persistent_outage_raises_a_transient_error_after_the_retries(admin, api, no_retry_wait, failure):
    api.post(GRAPHQL_URL, **failure)

    with pytest.raises(AdminUnavailable) as caught:
        admin.query("webhookSubscriptions", {"first": 1})

    assert caught.value.transient is True
    assert len(api.calls) == 1 + len(client_module.RETRY_DELAYS)


@pytest.mark.parametrize("status", [401, 403])
def test_revoked_token_raises_access_denied_without_retry(admin, api, status):
    api.post(GRAPHQL_URL, status=status,
             json={"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})

    with pytest.raises(AccessDenied) as caught:
        admin.query("webhookSubscriptions", {"first": 1})

    assert caught.value.transient is False
    assert len(api.calls) == 1


def test_answer_without_json_is_an_error(admin, api):
    api.post(GRAPHQL_URL, status=200, body="<html>maintenance</html>")

    with pytest.raises(AdminAPIError):
        admin.query("webhookSubscriptions", {"first": 1})


def test_user_errors_raise_with_their_codes(admin, api):
    user_errors = [{"field": ["webhookSubscription", "callbackUrl"],
                    "message": "Address for this topic has already been taken", "code": "TAKEN"},
                   {"field": None, "message": "Something else"}]
    api.post(GRAPHQL_URL, json={"data": {"webhookSubscriptionCreate": {"webhookSubscription": None,
                                                                       "userErrors": user_errors}}})

    with pytest.raises(UserErrors) as caught:
        admin.mutate("webhookSubscriptionCreate", CREATE_VARIABLES)

    assert caught.value.codes == {"TAKEN"}
    assert caught.value.errors == user_errors
    assert caught.value.operation == "webhookSubscriptionCreate"
    assert "webhookSubscription.callbackUrl: Address for this topic has already been taken" in str(caught.value)
    assert caught.value.transient is False


def test_other_api_version_served_is_logged(admin, api, caplog):
    api.post(GRAPHQL_URL, json={"data": {"webhookSubscriptions": {"nodes": []}}},
             headers={"X-Shopify-API-Version": "2025-10"})

    with caplog.at_level(logging.WARNING, logger="app.shopify.client"):
        admin.query("webhookSubscriptions", {"first": 1})

    [record] = [r for r in caplog.records if r.name == "app.shopify.client"]
    assert record.levelno == logging.WARNING
    assert "2025-10" in record.getMessage() and "2026-10" in record.getMessage()
    assert "shpat_client_token" not in record.getMessage()


def test_matching_api_version_logs_nothing(admin, api, caplog):
    api.post(GRAPHQL_URL, json={"data": {"webhookSubscriptions": {"nodes": []}}}, headers=VERSION)

    with caplog.at_level(logging.WARNING, logger="app.shopify.client"):
        admin.query("webhookSubscriptions", {"first": 1})

    assert [r for r in caplog.records if r.name == "app.shopify.client"] == []
