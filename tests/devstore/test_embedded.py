"""devstore plays Shopify's admin for an embedded app: managed installation, token exchange, the page
that frames the app (its launch query and session tokens) and the endpoint its App Bridge stand-in
gets fresh tokens from. The app's own checks (app/shopify/verify.py) judge what devstore sends."""

from __future__ import annotations

import base64
import html
import re
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest
from sqlalchemy import select

from app.shopify.verify import decode_session_token, verify_query_hmac
from devstore import session_tokens
from devstore.models import Installation
from devstore.state import toml_scopes
from tests.devstore.conftest import DEVSTORE_KEY, DEVSTORE_SECRET, OTHER_SHOP, SHOP

APP_URL = "http://127.0.0.1:8999"
TOKEN = f"/stores/{SHOP}/admin/oauth/access_token"
ADMIN = f"/stores/{SHOP}/admin/apps/oncecode"
MINT = f"/stores/{SHOP}/admin/app_bridge/id_token"
EXCHANGE = {"client_id": DEVSTORE_KEY, "client_secret": DEVSTORE_SECRET,
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token"}
GRAPHQL = f"/stores/{SHOP}/admin/api/2026-10/graphql.json"


@pytest.fixture
def devstore(make_devstore):  # type: ignore[no-untyped-def]
    return make_devstore(app_url=APP_URL)


def managed_install(client, shop: str = SHOP, **body: Any):  # type: ignore[no-untyped-def]
    response = client.post(f"/_devstore/stores/{shop}/managed_install", json=body)
    assert response.status_code == 200, response.json
    return response.json


def session_token(shop: str = SHOP, secret: str = DEVSTORE_SECRET, **changes: Any) -> str:
    """A session token as the admin signs it, with ``changes`` to its claims (None removes one)."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": f"https://{shop}/admin", "dest": f"https://{shop}", "aud": DEVSTORE_KEY,
                              "sub": "100000000001", "exp": now + 60, "nbf": now, "iat": now,
                              "jti": "0f6b1a36-4c2e-4a8e-9d43-3f1d2a6a7d11",
                              "sid": "9f0f1c8e-1111-4d2e-9c1a-0b2c3d4e5f60"}
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


def exchange(client, token: str, shop: str = SHOP, **overrides: str):  # type: ignore[no-untyped-def]
    return client.post(f"/stores/{shop}/admin/oauth/access_token",
                       data={**EXCHANGE, "subject_token": token, "expiring": "1", **overrides})


def exchanges(client, shop: str = SHOP) -> int:  # type: ignore[no-untyped-def]
    return client.get(f"/_devstore/stores/{shop}/token_exchanges").json["count"]


def installation(state, shop: str = SHOP) -> Installation | None:  # type: ignore[no-untyped-def]
    with state.session() as session:
        return session.scalar(select(Installation).where(Installation.shop == shop))


def shop_query(client, token: str | None):  # type: ignore[no-untyped-def]
    headers = {"X-Shopify-Access-Token": token} if token else {}
    return client.post(GRAPHQL, json={"query": "{ shop { myshopifyDomain } }"}, headers=headers)


def frame_src(page: str) -> str:
    found = re.search(r'<iframe id="app-frame"[^>]* src="([^"]+)"', page)
    assert found, "no app frame on the page"
    return html.unescape(found.group(1))


# --- managed installation --------------------------------------------------------------------------

def test_managed_install_grants_the_toml_scopes_without_a_token_or_a_webhook(client, state):
    store = managed_install(client)

    assert store["installation"]["installed"] is True
    assert ",".join(store["installation"]["scopes"]) == toml_scopes() != ""
    assert store["installation"]["access_token"] is None  # the app has no token until it exchanges one
    assert client.get(f"/_devstore/stores/{SHOP}/deliveries").json == []  # Shopify calls nothing of the app
    assert shop_query(client, None).status_code == 401


def test_managed_install_with_fewer_scopes_then_uninstall_fires_app_uninstalled(client):
    store = managed_install(client, scopes=["read_customers"])
    assert store["installation"]["scopes"] == ["read_customers"]
    token = exchange(client, session_token()).json["access_token"]
    hook = client.post(GRAPHQL, headers={"X-Shopify-Access-Token": token}, json={"query": (
        'mutation { webhookSubscriptionCreate(topic: APP_UNINSTALLED, webhookSubscription: '
        '{uri: "http://127.0.0.1:9/webhooks"}) { userErrors { message } } }')})
    assert hook.json["data"]["webhookSubscriptionCreate"]["userErrors"] == []

    assert client.post(f"/_devstore/stores/{SHOP}/uninstall").status_code == 200

    assert [d["topic"] for d in client.get(f"/_devstore/stores/{SHOP}/deliveries").json] == ["app/uninstalled"]
    assert shop_query(client, token).status_code == 401


def test_managed_install_of_an_installed_app_updates_its_scopes_and_keeps_its_token(client, state):
    managed_install(client, scopes="read_customers")
    token = exchange(client, session_token()).json["access_token"]

    managed_install(client)

    row = installation(state)
    assert row.scopes == toml_scopes() and row.access_token == token


def test_managed_install_refuses_bad_scopes_and_unknown_stores(client):
    assert client.post(f"/_devstore/stores/{SHOP}/managed_install", json={"scopes": 3}).status_code == 400
    assert client.post("/_devstore/stores/nope.myshopify.com/managed_install").status_code == 404


def test_the_install_page_offers_both_installs_and_its_button_installs(client, state):
    page = client.get(ADMIN)

    assert page.status_code == 200
    assert f'action="{ADMIN}/install"' in page.text
    oauth_url = html.unescape(re.search(r'href="(http://127\.0\.0\.1:8999/\?[^"]+)"', page.text).group(1))
    query = dict(parse_qsl(urlsplit(oauth_url).query))
    assert sorted(query) == ["hmac", "host", "shop", "timestamp"] and query["shop"] == SHOP
    assert verify_query_hmac(query, [DEVSTORE_SECRET])

    response = client.post(f"{ADMIN}/install")

    assert response.status_code == 303 and response.headers["Location"] == ADMIN
    assert installation(state).installed and installation(state).access_token is None


# --- token exchange --------------------------------------------------------------------------------

def test_token_exchange_answers_like_the_code_exchange_and_the_token_works(client, state):
    managed_install(client)

    response = exchange(client, session_token())

    assert response.status_code == 200
    body = response.json
    assert list(body) == ["access_token", "scope", "expires_in", "refresh_token", "refresh_token_expires_in"]
    assert body["scope"] == toml_scopes() and body["expires_in"] == 3600
    assert body["refresh_token_expires_in"] == 7776000
    assert shop_query(client, body["access_token"]).json["data"]["shop"]["myshopifyDomain"] == SHOP
    assert exchanges(client) == 1
    assert exchanges(client, OTHER_SHOP) == 0


@pytest.mark.parametrize("expiring", [1, True, "1"])
def test_token_exchange_as_json_reads_expiring_as_shopifys_libraries_send_it(client, expiring):
    managed_install(client)

    response = client.post(TOKEN, json={**EXCHANGE, "subject_token": session_token(), "expiring": expiring})

    assert response.status_code == 200 and response.json["expires_in"] == 3600


def test_token_exchange_without_expiring_gives_a_token_that_never_expires(client, state):
    managed_install(client)

    response = client.post(TOKEN, json={**EXCHANGE, "subject_token": session_token()})

    assert response.status_code == 200 and list(response.json) == ["access_token", "scope"]
    assert installation(state).access_token_expires_at is None


def test_each_exchange_is_counted_and_replaces_the_previous_token(client):
    managed_install(client)
    first = exchange(client, session_token()).json["access_token"]

    second = exchange(client, session_token(jti="another-jti")).json["access_token"]

    assert exchanges(client) == 2
    assert shop_query(client, first).status_code == 401
    assert shop_query(client, second).status_code == 200
    jtis = [e["subject_jti"] for e in client.get(f"/_devstore/stores/{SHOP}/token_exchanges").json["exchanges"]]
    assert jtis == ["another-jti", "0f6b1a36-4c2e-4a8e-9d43-3f1d2a6a7d11"]


@pytest.mark.parametrize(("token", "why"), [
    pytest.param(lambda: session_token(secret="not-the-app-secret-0123456789abcdef"), "signature", id="bad-signature"),
    pytest.param(lambda: session_token(aud="another-app"), "another app", id="wrong-aud"),
    pytest.param(lambda: session_token(exp=int(time.time()) - 30, iat=int(time.time()) - 90,
                                       nbf=int(time.time()) - 90), "expired", id="expired"),
    pytest.param(lambda: session_token(nbf=int(time.time()) + 60), "not valid yet", id="not-yet-valid"),
    pytest.param(lambda: session_token(OTHER_SHOP), "another shop", id="other-shop"),
    pytest.param(lambda: session_token(iss=f"https://{OTHER_SHOP}/admin"), "another shop", id="iss-of-other-shop"),
    pytest.param(lambda: session_token(exp=None), "exp", id="no-exp"),
    pytest.param(lambda: session_token(sid=None), "sid", id="no-sid"),
    pytest.param(lambda: "not.a.jwt", "not a valid JWT", id="garbage"),
])
def test_an_invalid_subject_token_is_refused_with_shopifys_error(client, state, token, why):
    managed_install(client)

    response = exchange(client, token())

    assert response.status_code == 400
    assert response.json["error"] == "invalid_subject_token"
    assert why in response.json["error_description"]
    assert exchanges(client) == 0 and installation(state).access_token is None


def test_exchange_on_a_store_without_the_app_is_refused(client):
    response = exchange(client, session_token())

    assert response.status_code == 401
    assert response.json == {"error": "invalid_client", "error_description": f"The app is not installed on {SHOP}"}
    assert exchanges(client) == 0


def test_exchange_after_an_uninstall_is_refused(client):
    managed_install(client)
    client.post(f"/_devstore/stores/{SHOP}/uninstall")

    assert exchange(client, session_token()).json["error"] == "invalid_client"


@pytest.mark.parametrize(("overrides", "status", "error"), [
    pytest.param({"subject_token_type": "urn:ietf:params:oauth:token-type:access_token"}, 400, "invalid_request",
                 id="wrong-subject-token-type"),
    pytest.param({"requested_token_type": "urn:shopify:params:oauth:token-type:online-access-token"}, 400,
                 "invalid_request", id="online-token"),
    pytest.param({"requested_token_type": ""}, 400, "invalid_request", id="no-requested-token-type"),
    pytest.param({"subject_token": ""}, 400, "missing_subject_token", id="no-subject-token"),
    pytest.param({"client_secret": "wrong"}, 401, "invalid_client", id="wrong-client-secret"),
])
def test_malformed_exchanges_are_refused(client, overrides, status, error):
    managed_install(client)

    response = exchange(client, session_token(), **overrides)

    assert (response.status_code, response.json["error"]) == (status, error)
    assert exchanges(client) == 0


def test_the_control_session_token_is_one_the_store_accepts(client):
    managed_install(client)
    minted = client.post(f"/_devstore/stores/{SHOP}/session_token", json={"sub": "42"}).json

    assert minted["claims"]["sub"] == "42"
    assert exchange(client, minted["id_token"]).status_code == 200


# --- the admin page and its launch -----------------------------------------------------------------

def test_the_admin_page_frames_the_app_with_shopifys_signed_launch(client):
    managed_install(client)

    page = client.get(f"{ADMIN}/codes?status=failed&shop=evil.myshopify.com")

    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    src = urlsplit(frame_src(page.text))
    assert f"{src.scheme}://{src.netloc}{src.path}" == f"{APP_URL}/codes"
    pairs = parse_qsl(src.query)
    assert [k for k, _ in pairs] == ["embedded", "hmac", "host", "id_token", "locale", "session", "shop", "status",
                                     "timestamp"]  # sorted, as Shopify sends them
    query = dict(pairs)
    assert verify_query_hmac(query, [DEVSTORE_SECRET])
    assert not verify_query_hmac({**query, "status": "redeemed"}, [DEVSTORE_SECRET])
    assert (query["embedded"], query["locale"], query["shop"], query["status"]) == ("1", "en", SHOP, "failed")
    assert base64.b64decode(query["host"] + "==").decode() == "admin.shopify.com/store/demo"
    assert re.fullmatch(r"[0-9a-f]{64}", query["session"])
    # The app's own session-token check accepts the id_token, for this shop.
    assert decode_session_token(f"Bearer {query['id_token']}", DEVSTORE_KEY, [DEVSTORE_SECRET]) == SHOP
    claims = jwt.decode(query["id_token"], DEVSTORE_SECRET, algorithms=["HS256"], audience=DEVSTORE_KEY)
    assert list(claims) == ["iss", "dest", "aud", "sub", "exp", "nbf", "iat", "jti", "sid", "sig"]
    assert claims["iss"] == f"https://{SHOP}/admin" and claims["dest"] == f"https://{SHOP}"
    assert claims["exp"] == claims["iat"] + 60 and claims["nbf"] == claims["iat"] == int(query["timestamp"])
    assert claims["sub"] == session_tokens.staff_user_id(SHOP) and claims["sub"].isdigit()
    # The launch's id_token is exchangeable, like Shopify's.
    assert exchange(client, query["id_token"]).status_code == 200


def test_one_browser_keeps_one_admin_session_and_tokens_are_fresh(client):
    managed_install(client)
    first = dict(parse_qsl(urlsplit(frame_src(client.get(ADMIN).text)).query))
    second = dict(parse_qsl(urlsplit(frame_src(client.get(ADMIN).text)).query))

    claims = [jwt.decode(q["id_token"], options={"verify_signature": False}) for q in (first, second)]
    assert first["session"] == second["session"] and claims[0]["sid"] == claims[1]["sid"]
    assert claims[0]["jti"] != claims[1]["jti"]


def test_the_app_is_found_by_its_api_key_too_and_unknown_apps_are_404(client):
    managed_install(client)

    assert client.get(f"/stores/{SHOP}/admin/apps/{DEVSTORE_KEY}").status_code == 200
    assert client.get(f"/stores/{SHOP}/admin/apps/someone-else").status_code == 404
    assert client.get("/stores/nope.myshopify.com/admin/apps/oncecode").status_code == 404


def test_without_an_app_url_the_admin_says_so(make_devstore):
    client = make_devstore().test_client()
    client.post(f"/_devstore/stores/{SHOP}/managed_install")

    page = client.get(ADMIN)

    assert page.status_code == 409 and "APP_URL" in page.text


def test_the_control_api_gives_the_launch_url(client):
    assert client.get(f"/_devstore/stores/{SHOP}/app_launch?path=/codes").status_code == 409  # not installed
    managed_install(client)

    answer = client.get(f"/_devstore/stores/{SHOP}/app_launch?path=/codes").json

    assert answer["admin_url"] == f"{ADMIN}/codes"
    assert answer["url"].startswith(f"{APP_URL}/codes?embedded=1&hmac=")
    assert verify_query_hmac(dict(parse_qsl(urlsplit(answer["url"]).query)), [DEVSTORE_SECRET])
    assert client.get(f"/_devstore/stores/{SHOP}/app_launch?path=codes").status_code == 400


# --- fresh tokens for the framed app ---------------------------------------------------------------

def test_the_admin_page_mints_fresh_tokens_in_its_admin_session(client):
    managed_install(client)
    launch = dict(parse_qsl(urlsplit(frame_src(client.get(ADMIN).text)).query))

    response = client.post(MINT, headers={"Origin": "http://localhost"})

    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    token = response.json["id_token"]
    assert decode_session_token(f"Bearer {token}", DEVSTORE_KEY, [DEVSTORE_SECRET]) == SHOP
    sid = jwt.decode(launch["id_token"], options={"verify_signature": False})["sid"]
    assert jwt.decode(token, options={"verify_signature": False})["sid"] == sid


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-origin"),
    pytest.param({"Origin": "http://127.0.0.1:8999"}, id="the-apps-origin"),
    pytest.param({"Origin": "http://localhost", "Sec-Fetch-Site": "cross-site"}, id="cross-site"),
])
def test_the_mint_endpoint_refuses_other_origins(client, headers):
    managed_install(client)
    client.get(ADMIN)

    response = client.post(MINT, headers=headers)

    assert response.status_code == 403 and "Origin" in response.json["error"]


def test_the_mint_endpoint_refuses_a_store_whose_admin_this_browser_did_not_open(client):
    managed_install(client)
    managed_install(client, OTHER_SHOP)
    client.get(ADMIN)  # demo's admin only

    response = client.post(f"/stores/{OTHER_SHOP}/admin/app_bridge/id_token", headers={"Origin": "http://localhost"})

    assert response.status_code == 403 and "admin session" in response.json["error"]


def test_the_mint_endpoint_refuses_a_store_without_the_app(client):
    managed_install(client)
    client.get(ADMIN)
    client.post(f"/_devstore/stores/{SHOP}/uninstall")

    response = client.post(MINT, headers={"Origin": "http://localhost"})

    assert response.status_code == 409


def test_the_app_bridge_stand_in_is_served_as_javascript(client):
    response = client.get("/_devstore/app-bridge.js")

    assert response.status_code == 200 and response.mimetype == "text/javascript"
    assert b"shopify-reload" in response.data and b"idToken" in response.data


def test_the_store_page_links_to_the_admin_and_offers_a_managed_install(client):
    page = client.get(f"/stores/{SHOP}").text

    assert f'action="{ADMIN}/install"' in page and f'href="{ADMIN}"' in page


def test_devstores_cookie_has_its_own_name_so_an_app_on_the_same_host_keeps_its_own(client):
    managed_install(client)

    response = client.get(ADMIN)

    assert response.headers["Set-Cookie"].startswith("devstore_session=")
