"""devstore's OAuth: the approve page, the signed callback, the code exchange and token rotation."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import select

from app.config import ROOT
from devstore.models import AuthorizationCode, Installation
from tests.devstore.conftest import DEVSTORE_KEY, DEVSTORE_SECRET, OTHER_SHOP, SHOP
from tests.helpers import query_signature

SAMPLES = next(p for p in (ROOT.parent / "shared/reference/samples", Path("/work/shared/reference/samples"))
               if p.is_dir())
REDIRECT_URI = "https://oncecode.test/auth/callback"
SCOPES = "read_customers,write_customers,write_discounts"
AUTHORIZE = f"/stores/{SHOP}/admin/oauth/authorize"
TOKEN = f"/stores/{SHOP}/admin/oauth/access_token"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def authorize_params(**overrides: str) -> dict[str, str]:
    params = {"client_id": DEVSTORE_KEY, "scope": SCOPES, "redirect_uri": REDIRECT_URI, "state": "nonce-123"}
    params.update(overrides)
    return params


def approve(client, shop: str = SHOP, **overrides: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Press Install; return the callback's query."""
    response = client.post(f"/stores/{shop}/admin/oauth/authorize",
                           data={**authorize_params(**overrides), "decision": "install"})
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return dict(parse_qsl(location.query))


def exchange(client, code: str, shop: str = SHOP, **extra: str):  # type: ignore[no-untyped-def]
    return client.post(f"/stores/{shop}/admin/oauth/access_token",
                       data={"client_id": DEVSTORE_KEY, "client_secret": DEVSTORE_SECRET, "code": code, **extra})


def refresh(client, refresh_token: str):  # type: ignore[no-untyped-def]
    return client.post(TOKEN, data={"client_id": DEVSTORE_KEY, "client_secret": DEVSTORE_SECRET,
                                    "grant_type": "refresh_token", "refresh_token": refresh_token})


def installation(state) -> Installation:  # type: ignore[no-untyped-def]
    with state.session() as session:
        return session.scalar(select(Installation).where(Installation.shop == SHOP))


def install(client, expiring: str = "1") -> dict:  # type: ignore[no-untyped-def]
    response = exchange(client, approve(client)["code"], expiring=expiring)
    assert response.status_code == 200, response.text
    return response.json


# --- authorize -------------------------------------------------------------------------------------

def test_the_approve_page_lists_the_store_and_the_requested_scopes(client):
    response = client.get(AUTHORIZE, query_string=authorize_params())

    assert response.status_code == 200
    page = response.text
    assert "Demo" in page and SHOP in page
    for scope in SCOPES.split(","):
        assert f"<code>{scope}</code>" in page
    assert 'value="install"' in page and 'value="cancel"' in page


@pytest.mark.parametrize(("path", "params", "status"), [
    ("/stores/nowhere.myshopify.com/admin/oauth/authorize", authorize_params(), 404),
    (AUTHORIZE, authorize_params(client_id="someone-else"), 400),
    (AUTHORIZE, authorize_params(redirect_uri=""), 400),
    (AUTHORIZE, authorize_params(redirect_uri="/relative/callback"), 400),
    (AUTHORIZE, {**authorize_params(), "grant_options[]": "per-user"}, 400),
])
def test_bad_authorize_requests_get_an_error_page(client, path, params, status):
    response = client.get(path, query_string=params)

    assert response.status_code == status
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"


def test_install_redirects_with_a_signed_callback(client, state):
    before = int(time.time())
    params = approve(client)

    assert sorted(params) == ["code", "hmac", "host", "shop", "state", "timestamp"]
    assert params["hmac"] == query_signature(params, DEVSTORE_SECRET)
    assert params["shop"] == SHOP and params["state"] == "nonce-123"
    # Unpadded, as in Shopify's own callbacks ("…c3RvcmUvZGVtbw", not "…ZGVtbw==").
    assert "=" not in params["host"]
    assert base64.b64decode(params["host"] + "==").decode() == "admin.shopify.com/store/demo"
    assert before <= int(params["timestamp"]) <= time.time() + 1
    with state.session() as session:
        code = session.get(AuthorizationCode, params["code"])
        assert (code.shop, code.scopes, code.used) == (SHOP, SCOPES, False)


def test_cancel_shows_a_page_and_grants_nothing(client, state):
    response = client.post(AUTHORIZE, data={**authorize_params(), "decision": "cancel"})

    assert response.status_code == 200
    assert "cancelled" in response.text
    with state.session() as session:
        assert session.scalars(select(AuthorizationCode)).all() == []


def test_auto_approve_skips_the_page(make_devstore):
    client = make_devstore(auto_approve=True).test_client()

    response = client.get(AUTHORIZE, query_string=authorize_params())

    assert response.status_code == 302
    params = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
    assert params["hmac"] == query_signature(params, DEVSTORE_SECRET)


# --- access_token: code --------------------------------------------------------------------------

def test_code_exchange_with_expiring_answers_like_shopify_and_installs(client, state):
    answer = install(client, expiring="1")

    assert list(answer) == list(sample("oauth-access-token-offline-expiring.json"))
    assert answer["access_token"].startswith("shpat_") and answer["refresh_token"].startswith("shprt_")
    assert (answer["scope"], answer["expires_in"], answer["refresh_token_expires_in"]) == (SCOPES, 3600, 7776000)
    row = installation(state)
    assert row.installed and row.scopes == SCOPES and row.client_id == DEVSTORE_KEY
    assert (row.access_token, row.refresh_token) == (answer["access_token"], answer["refresh_token"])
    assert 3590 < (row.access_token_expires_at - row.installed_at).total_seconds() <= 3600


def test_code_exchange_without_expiring_gives_a_permanent_token_from_a_json_body(client, state):
    code = approve(client)["code"]

    response = client.post(TOKEN, json={"client_id": DEVSTORE_KEY, "client_secret": DEVSTORE_SECRET, "code": code})

    assert response.status_code == 200
    assert list(response.json) == list(sample("oauth-access-token-offline-non-expiring.json"))
    row = installation(state)
    assert row.access_token == response.json["access_token"]
    assert row.access_token_expires_at is None and row.refresh_token is None


def test_a_code_works_once(client):
    code = approve(client)["code"]
    assert exchange(client, code).status_code == 200

    again = exchange(client, code)

    assert again.status_code == 400
    assert again.json == {"error": "invalid_request",
                          "error_description": "The authorization code was not found or was already used"}


@pytest.mark.parametrize("code", ["", "0" * 32])
def test_an_unknown_code_is_refused(client, code):
    assert exchange(client, code).json["error"] == "invalid_request"


def test_a_code_is_only_good_at_its_own_store(client):
    code = approve(client)["code"]

    assert exchange(client, code, shop=OTHER_SHOP).status_code == 400
    assert exchange(client, code).status_code == 200


@pytest.mark.parametrize("credentials", [
    {"client_id": DEVSTORE_KEY, "client_secret": "wrong"},
    {"client_id": "someone-else", "client_secret": DEVSTORE_SECRET},
    {"client_id": DEVSTORE_KEY},
])
def test_wrong_client_credentials_are_refused_and_leave_the_code_usable(client, credentials):
    code = approve(client)["code"]

    response = client.post(TOKEN, data={**credentials, "code": code})

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert exchange(client, code).status_code == 200


def test_an_unsupported_grant_type_is_refused(client):
    response = client.post(TOKEN, data={"client_id": DEVSTORE_KEY, "client_secret": DEVSTORE_SECRET,
                                        "grant_type": "client_credentials"})

    assert response.status_code == 400
    assert response.json["error"] == "unsupported_grant_type"


# --- access_token: refresh ---------------------------------------------------------------------

def test_refresh_rotates_both_tokens_and_retires_the_old_access_token(client, state):
    first = install(client)

    response = refresh(client, first["refresh_token"])

    assert response.status_code == 200
    answer = response.json
    assert list(answer) == list(sample("oauth-access-token-refresh.json"))
    assert answer["access_token"] != first["access_token"] and answer["refresh_token"] != first["refresh_token"]
    row = installation(state)
    assert row.access_token == answer["access_token"]  # the only token the Admin API accepts now
    assert row.refresh_token == answer["refresh_token"]


def test_the_previous_refresh_token_works_until_the_new_one_is_used(client):
    first = install(client)
    second = refresh(client, first["refresh_token"]).json  # pretend this answer was lost

    retried = refresh(client, first["refresh_token"])
    assert retried.status_code == 200
    third = retried.json
    # The lost answer's token was never used: it is gone; the retried one stays valid meanwhile.
    assert refresh(client, second["refresh_token"]).status_code == 400

    fourth = refresh(client, third["refresh_token"])
    assert fourth.status_code == 200
    assert refresh(client, first["refresh_token"]).json["error"] == "invalid_grant"
    assert refresh(client, third["refresh_token"]).status_code == 200  # the previous one, once more


def test_a_permanent_token_cannot_be_refreshed(client):
    install(client, expiring="0")

    assert refresh(client, "shprt_" + "0" * 32).status_code == 400


def test_reinstall_replaces_the_tokens(client, state):
    first = install(client)
    second = install(client)

    assert second["access_token"] != first["access_token"]
    assert installation(state).access_token == second["access_token"]
    assert refresh(client, first["refresh_token"]).status_code == 400
    assert refresh(client, second["refresh_token"]).status_code == 200


def test_uninstall_revokes_every_token(client, state):
    tokens = install(client)

    assert client.post(f"/_devstore/stores/{SHOP}/uninstall").status_code == 200

    row = installation(state)
    assert not row.installed and row.access_token is None and row.refresh_token is None
    assert refresh(client, tokens["refresh_token"]).status_code == 400
