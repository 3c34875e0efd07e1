"""The authorization-code grant and refresh, with ``responses`` standing in for Shopify's token endpoint."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from app.db import utcnow
from app.shopify import oauth
from tests.conftest import API_KEY, API_SECRET, make_settings

SAMPLES = Path("/work/shared/reference/samples")
TOKEN_URL = "https://demo.myshopify.com/admin/oauth/access_token"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"oauth-{name}.json").read_text())


def form(call: responses.Call) -> dict[str, str]:
    """The form body a request sent, one value per field (asserting there was just one)."""
    fields = parse_qs(call.request.body, strict_parsing=True)
    assert all(len(v) == 1 for v in fields.values()), fields
    return {k: v[0] for k, v in fields.items()}


def approx_now_plus(seconds: int):  # type: ignore[no-untyped-def]
    return lambda value: abs(value - (utcnow() + timedelta(seconds=seconds))) < timedelta(seconds=10)


@responses.activate
def test_exchange_code_asks_for_an_expiring_offline_token():
    responses.post(TOKEN_URL, json=sample("access-token-offline-expiring"))

    grant = oauth.exchange_code(make_settings(), "demo.myshopify.com", "the-code")

    assert len(responses.calls) == 1
    assert form(responses.calls[0]) == {"client_id": API_KEY, "client_secret": API_SECRET,
                                        "code": "the-code", "expiring": "1"}
    assert grant.access_token == "f85632530bf277ec9ac6f649fc327f17"
    assert grant.refresh_token == "shprt_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    assert grant.scopes == ("write_orders", "read_customers")
    assert approx_now_plus(3600)(grant.expires_at)
    assert approx_now_plus(7776000)(grant.refresh_token_expires_at)
    assert grant.expires_at.tzinfo is not None
    assert responses.calls[0].request.req_kwargs["timeout"]  # never an unbounded wait on Shopify


@responses.activate
def test_exchange_code_with_a_non_expiring_answer_has_no_expiry():
    responses.post(TOKEN_URL, json=sample("access-token-offline-non-expiring"))

    grant = oauth.exchange_code(make_settings(), "demo.myshopify.com", "the-code")

    assert grant.access_token == "f85632530bf277ec9ac6f649fc327f17"
    assert grant.expires_at is None
    assert grant.refresh_token is None


@responses.activate
def test_refresh_returns_the_rotated_refresh_token():
    responses.post(TOKEN_URL, json=sample("access-token-refresh"))

    grant = oauth.refresh_access_token(make_settings(), "demo.myshopify.com", "shprt_old")

    assert form(responses.calls[0]) == {"client_id": API_KEY, "client_secret": API_SECRET,
                                        "grant_type": "refresh_token", "refresh_token": "shprt_old"}
    assert grant.access_token == "shpat_yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
    assert grant.refresh_token == "shprt_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
    assert grant.scopes == ("write_products", "read_orders")
    assert approx_now_plus(3600)(grant.expires_at)


@responses.activate
def test_token_endpoint_follows_the_store_base_url():
    local = "http://127.0.0.1:8001/stores/demo.myshopify.com/admin/oauth/access_token"
    responses.post(local, json=sample("access-token-offline-expiring"))

    settings = make_settings(shopify_store_base_url="http://127.0.0.1:8001/stores/{shop}")
    oauth.exchange_code(settings, "demo.myshopify.com", "the-code")

    assert responses.calls[0].request.url == local


@pytest.mark.parametrize("answer", [
    pytest.param({"status": 500, "body": "oops"}, id="500"),
    pytest.param({"status": 502, "body": "<html>bad gateway</html>"}, id="502"),
    pytest.param({"status": 503, "json": {"errors": "unavailable"}}, id="503"),
    pytest.param({"status": 429, "json": {"errors": "slow down"}}, id="429"),
    pytest.param({"body": requests.exceptions.ConnectTimeout()}, id="connect-timeout"),
    pytest.param({"body": requests.exceptions.ReadTimeout()}, id="read-timeout"),
    pytest.param({"body": requests.exceptions.ConnectionError()}, id="connection-refused"),
])
@pytest.mark.parametrize("call", ["exchange", "refresh"])
@responses.activate
def test_unreachable_token_endpoint_is_transient(answer, call):
    responses.post(TOKEN_URL, **answer)

    with pytest.raises(oauth.TokenEndpointUnavailable) as caught:
        if call == "exchange":
            oauth.exchange_code(make_settings(), "demo.myshopify.com", "the-code")
        else:
            oauth.refresh_access_token(make_settings(), "demo.myshopify.com", "shprt_old")
    assert caught.value.transient is True
    assert API_SECRET not in str(caught.value)


@pytest.mark.parametrize("answer", [
    pytest.param({"status": 400, "json": {"error": "invalid_request",
                                          "error_description": "The authorization code was not found or was "
                                                               "already used"}}, id="400-invalid-request"),
    pytest.param({"status": 401, "json": {"error": "invalid_client"}}, id="401"),
    pytest.param({"status": 200, "json": {"scope": "read_orders"}}, id="200-without-token"),
    pytest.param({"status": 200, "body": "<html>not json</html>"}, id="200-not-json"),
])
@responses.activate
def test_refused_code_is_a_permanent_error(answer):
    responses.post(TOKEN_URL, **answer)

    with pytest.raises(oauth.TokenEndpointError) as caught:
        oauth.exchange_code(make_settings(), "demo.myshopify.com", "used-code")
    assert not isinstance(caught.value, oauth.TokenEndpointUnavailable)
    assert caught.value.transient is False


@responses.activate
def test_refusal_reason_is_reported():
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_request", "error_description": "code used"})

    with pytest.raises(oauth.TokenEndpointError, match="code used"):
        oauth.exchange_code(make_settings(), "demo.myshopify.com", "used-code")


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def test_authorize_url_asks_for_an_offline_token():
    settings = make_settings()

    url = oauth.authorize_url(settings, "demo.myshopify.com", "nonce-123")

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "demo.myshopify.com", "/admin/oauth/authorize")
    assert _query(url) == {
        "client_id": [API_KEY],
        "scope": [",".join(settings.shopify_scopes)],
        "redirect_uri": ["https://oncecode.test/auth/callback"],
        "state": ["nonce-123"],
    }
    assert "grant_options" not in url  # grant_options[]=per-user would make it an online token
    assert "+" not in url


def test_authorize_url_follows_the_store_base_url():
    settings = make_settings(shopify_store_base_url="http://127.0.0.1:8001/stores/{shop}")

    url = oauth.authorize_url(settings, "demo.myshopify.com", "nonce-123")

    assert url.startswith("http://127.0.0.1:8001/stores/demo.myshopify.com/admin/oauth/authorize?")
    assert _query(url)["redirect_uri"] == ["https://oncecode.test/auth/callback"]


@pytest.mark.parametrize(("required", "granted", "missing"), [
    (("read_orders",), ("read_orders",), []),
    (("read_orders",), ("write_orders",), []),
    (("read_orders", "write_orders"), ("write_orders",), []),
    (("write_orders",), ("read_orders",), ["write_orders"]),
    (("read_customers", "write_discounts"), ("read_customers",), ["write_discounts"]),
    (("read_customers", "read_discounts"), ("write_orders",), ["read_customers", "read_discounts"]),
    (("read_customers",), (), ["read_customers"]),
    (("read_orders",), ("write_products",), ["read_orders"]),
])
def test_missing_scopes(required, granted, missing):
    assert oauth.missing_scopes(required, granted) == missing
