"""The OAuth install through the Flask test client: every check refuses and stores nothing; success
stores encrypted tokens and queues the shop's setup. The last tests run the whole install against a
real local HTTP server standing in for the store (token endpoint, authorize page and Admin API).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import responses
from cryptography.fernet import Fernet, InvalidToken
from rq import Queue
from rq.job import Job
from sqlalchemy import select

from app import lifecycle
from app.config import DEFAULT_SCOPES
from app.db import utcnow
from app.models import Shop
from app.queues import setup_job_id
from tests.conftest import API_KEY, API_SECRET, TOKEN_KEY
from tests.helpers import query_signature
from tests.shopify.test_verify import HOSTILE_SHOPS

SHOP = "demo.myshopify.com"
TOKEN_URL = f"https://{SHOP}/admin/oauth/access_token"
ACCESS_TOKEN = "shpat_install_access_0123456789abcdef"
REFRESH_TOKEN = "shprt_install_refresh_0123456789abcdef"
HOST = base64.b64encode(b"admin.shopify.com/store/demo").decode()  # ends in "=": padding must survive


def grant_body(access_token: str = ACCESS_TOKEN, refresh_token: str = REFRESH_TOKEN,
               scope: str = DEFAULT_SCOPES) -> dict[str, Any]:
    """Shaped like samples/oauth-access-token-offline-expiring.json, granting what we ask for."""
    return {"access_token": access_token, "scope": scope, "expires_in": 3600,
            "refresh_token": refresh_token, "refresh_token_expires_in": 7776000}


@pytest.fixture
def token_endpoint() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(TOKEN_URL, json=grant_body())
        yield mock


def begin(client, shop: str = SHOP) -> str:  # type: ignore[no-untyped-def]
    """``/auth?shop=`` as Shopify's install link calls it; returns the state the browser now holds."""
    response = client.get("/auth", query_string={"shop": shop})
    assert response.status_code == 302
    with client.session_transaction() as browser:
        return browser["oauth"]["state"]


def signed(params: dict[str, str], secret: str = API_SECRET) -> dict[str, str]:
    return {**params, "hmac": query_signature(params, secret)}


def callback_params(state: str, shop: str = SHOP, **overrides: str) -> dict[str, str]:
    """What Shopify appends to the redirect_uri after the merchant approves, signed with our secret."""
    params = {"code": "0907a61c0c8d55e99db179b68161bc00", "host": HOST, "shop": shop, "state": state,
              "timestamp": str(int(time.time()))}
    params.update(overrides)
    return signed(params)


def shops(db) -> list[Shop]:  # type: ignore[no-untyped-def]
    db.expire_all()
    return list(db.scalars(select(Shop)))


def setup_jobs(redis) -> list[str]:  # type: ignore[no-untyped-def]
    return Queue("default", connection=redis).job_ids


# --- /auth -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shop", HOSTILE_SHOPS)
def test_begin_refuses_a_hostile_shop(client, shop):
    response = client.get("/auth", query_string={"shop": shop})

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert client.get_cookie("oncecode_session") is None
    with client.session_transaction() as browser:
        assert "oauth" not in browser


def test_begin_without_a_shop_is_refused(client):
    assert client.get("/auth").status_code == 400
    assert client.get_cookie("oncecode_session") is None


@pytest.mark.parametrize(("given", "shop"), [(SHOP, SHOP), ("Demo-Shop.myshopify.com", "demo-shop.myshopify.com")])
def test_begin_redirects_to_the_authorize_page_with_the_session_state(client, given, shop):
    response = client.get("/auth", query_string={"shop": given})

    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("https", shop, "/admin/oauth/authorize")
    query = parse_qs(location.query)
    with client.session_transaction() as browser:
        assert browser["oauth"] == {"state": query["state"][0], "shop": shop}
    assert len(query["state"][0]) >= 32
    assert query["client_id"] == [API_KEY]
    assert query["redirect_uri"] == ["https://oncecode.test/auth/callback"]
    assert "grant_options[]" not in query


def test_each_begin_gets_a_new_state(client):
    assert begin(client) != begin(client)


# --- / (the app URL Shopify opens) -----------------------------------------------------------------

def launch_params(**overrides: str) -> dict[str, str]:
    params = {"host": HOST, "shop": SHOP, "timestamp": str(int(time.time()))}
    params.update(overrides)
    return signed(params)


def test_launch_without_shop_shows_the_welcome_page(client):
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("params", [
    pytest.param(lambda: {**launch_params(), "hmac": "0" * 64}, id="bad-hmac"),
    pytest.param(lambda: {k: v for k, v in launch_params().items() if k != "hmac"}, id="unsigned"),
    pytest.param(lambda: launch_params(timestamp=str(int(time.time()) - 3600)), id="stale"),
])
def test_launch_that_shopify_did_not_sign_is_refused(client, params):
    response = client.get("/", query_string=params())

    assert response.status_code == 403
    assert "Location" not in response.headers


def test_launch_for_a_shop_not_installed_starts_the_install(client):
    response = client.get("/", query_string=launch_params())

    assert response.status_code == 302
    assert response.headers["Location"] == f"/auth?shop={SHOP}"


def test_embedded_launch_leaves_the_iframe_first(client):
    response = client.get("/", query_string=launch_params(embedded="1"))

    assert response.status_code == 200
    assert f"/auth?shop={SHOP}" in response.text and '"_top"' in response.text


def test_launch_with_repeated_ids_is_verified_over_all_of_them(client):
    # A bulk-action launch: ?ids[]=2&ids[]=1, signed (as ShopifyAPI documents) over ids=["2", "1"].
    timestamp = str(int(time.time()))
    message = f'ids=["2", "1"]&shop={SHOP}&timestamp={timestamp}'
    digest = hmac.new(API_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    query = urlencode([("ids[]", "2"), ("ids[]", "1"), ("shop", SHOP), ("timestamp", timestamp), ("hmac", digest)])

    response = client.get(f"/?{query}")

    assert response.status_code == 302
    assert response.headers["Location"] == f"/auth?shop={SHOP}"


# --- /auth/callback: refusals ---------------------------------------------------------------------

def _state_mismatch(state: str) -> dict[str, str]:
    return callback_params("x" + state)


def _tampered_code(state: str) -> dict[str, str]:
    return {**callback_params(state), "code": "another-code"}


def _tampered_host(state: str) -> dict[str, str]:
    return {**callback_params(state), "host": base64.b64encode(b"admin.shopify.com/store/evil").decode()}


REFUSALS = [
    pytest.param(_state_mismatch, 403, id="state-mismatch"),
    pytest.param(lambda state: callback_params("é" * 43), 403, id="non-ascii-state"),
    pytest.param(lambda state: {**callback_params(state), "hmac": "0" * 64}, 403, id="bad-hmac"),
    pytest.param(lambda state: {**callback_params(state), "hmac": "é" * 64}, 403, id="non-ascii-hmac"),
    pytest.param(lambda state: signed({k: v for k, v in callback_params(state).items() if k != "hmac"},
                                      "not-our-secret"), 403, id="hmac-other-secret"),
    pytest.param(_tampered_code, 403, id="tampered-code"),
    pytest.param(_tampered_host, 403, id="tampered-host"),
    pytest.param(lambda state: callback_params(state, timestamp=str(int(time.time()) - 600)), 403,
                 id="stale-timestamp"),
    pytest.param(lambda state: callback_params(state, timestamp=str(int(time.time()) + 600)), 403,
                 id="future-timestamp"),
    pytest.param(lambda state: callback_params(state, timestamp="now"), 403, id="garbage-timestamp"),
    pytest.param(lambda state: callback_params(state, shop="other.myshopify.com"), 403, id="other-shop"),
    *(pytest.param(lambda state, shop=shop: callback_params(state, shop=shop), 400, id=f"hostile-shop-{shop!r}")
      for shop in HOSTILE_SHOPS),
    *(pytest.param(lambda state, name=name: signed({k: v for k, v in callback_params(state).items()
                                                    if k not in (name, "hmac")}), 400, id=f"missing-{name}")
      for name in ("code", "shop", "state", "timestamp")),
    pytest.param(lambda state: {k: v for k, v in callback_params(state).items() if k != "hmac"}, 400,
                 id="missing-hmac"),
]


@pytest.mark.parametrize(("make_params", "status"), REFUSALS)
def test_callback_refusal_stores_nothing_and_never_calls_shopify(client, db, redis, token_endpoint,
                                                                 make_params, status):
    state = begin(client)

    response = client.get("/auth/callback", query_string=make_params(state))

    assert response.status_code == status
    assert len(token_endpoint.calls) == 0
    assert shops(db) == []
    assert setup_jobs(redis) == []


def test_callback_without_an_install_started_in_this_browser_is_refused(client, db, token_endpoint):
    response = client.get("/auth/callback", query_string=callback_params("a-state-we-never-issued"))

    assert response.status_code == 403
    assert len(token_endpoint.calls) == 0
    assert shops(db) == []


# --- /auth/callback: success ----------------------------------------------------------------------

def test_callback_stores_the_encrypted_token_and_queues_setup(client, db, redis, token_endpoint):
    state = begin(client)

    response = client.get("/auth/callback", query_string=callback_params(state))

    assert response.status_code == 200, response.text
    assert len(token_endpoint.calls) == 1
    assert parse_qs(token_endpoint.calls[0].request.body)["code"] == ["0907a61c0c8d55e99db179b68161bc00"]
    [shop] = shops(db)
    assert shop.domain == SHOP
    assert shop.is_installed and shop.setup_completed_at is None
    assert shop.scopes == DEFAULT_SCOPES
    assert abs(shop.access_token_expires_at - (utcnow() + timedelta(hours=1))) < timedelta(seconds=30)
    assert abs(shop.refresh_token_expires_at - (utcnow() + timedelta(days=90))) < timedelta(seconds=30)
    for column, plaintext in ((shop.access_token, ACCESS_TOKEN), (shop.refresh_token, REFRESH_TOKEN)):
        assert isinstance(column, bytes)
        assert plaintext.encode() not in column
        assert plaintext.encode() not in base64.urlsafe_b64decode(column)
        with pytest.raises(InvalidToken):
            Fernet(Fernet.generate_key()).decrypt(column)
        assert Fernet(TOKEN_KEY).decrypt(column).decode() == plaintext

    expected_job = setup_job_id(shop.id, shop.installed_at)
    assert setup_jobs(redis) == [expected_job]
    job = Job.fetch(expected_job, connection=redis)
    assert job.func_name == "workers.install.set_up_shop"
    assert job.args == (shop.id,)  # an id, never a token, goes through the queue


def test_the_installed_page_opens_the_app_in_the_shopify_admin(client, db, token_endpoint):
    state = begin(client)
    response = client.get("/auth/callback", query_string=callback_params(state))
    assert response.status_code == 200
    assert (f'<a class="button" href="https://{SHOP}/admin/apps/{API_KEY}">Open OnceCode in your admin</a>'
            in response.text)


def test_callback_cannot_be_replayed(client, db, token_endpoint):
    state = begin(client)
    params = callback_params(state)
    assert client.get("/auth/callback", query_string=params).status_code == 200

    replay = client.get("/auth/callback", query_string=params)

    assert replay.status_code == 403  # the state was used up by the first callback
    assert len(token_endpoint.calls) == 1


def test_callback_accepts_a_query_signed_with_the_previous_secret(app, client, db, token_endpoint):
    rt = app.extensions["oncecode"]
    rt.settings = rt.settings.with_overrides(shopify_api_secret="rotated-secret",
                                             shopify_api_secret_previous=API_SECRET)
    state = begin(client)

    response = client.get("/auth/callback", query_string=callback_params(state))

    assert response.status_code == 200
    assert len(shops(db)) == 1


def test_granted_scopes_lacking_a_required_one_store_nothing(client, db, redis, token_endpoint):
    token_endpoint.replace(responses.POST, TOKEN_URL,
                           json=grant_body(scope="read_customers,write_customers,read_orders"))
    state = begin(client)

    response = client.get("/auth/callback", query_string=callback_params(state))

    assert response.status_code == 403
    assert "write_discounts" in response.text
    assert shops(db) == []
    assert setup_jobs(redis) == []


@pytest.mark.parametrize(("answer", "status"), [
    ({"status": 400, "json": {"error": "invalid_request", "error_description": "code already used"}}, 502),
    ({"status": 503, "body": "unavailable"}, 502),
    ({"body": requests.exceptions.ConnectTimeout()}, 502),
])
def test_token_endpoint_failure_stores_nothing(client, db, redis, token_endpoint, answer, status):
    token_endpoint.replace(responses.POST, TOKEN_URL, **answer)
    state = begin(client)

    response = client.get("/auth/callback", query_string=callback_params(state))

    assert response.status_code == status
    assert shops(db) == []
    assert setup_jobs(redis) == []


def test_reinstall_reuses_the_shop_row_with_a_new_token(client, db, rt, redis, token_endpoint):
    assert client.get("/auth/callback", query_string=callback_params(begin(client))).status_code == 200
    [first] = shops(db)
    first_id = first.id

    lifecycle.uninstall(db, redis, SHOP, triggered_at=None)
    db.commit()
    [gone] = shops(db)
    assert gone.uninstalled_at is not None and gone.access_token is None and not gone.is_installed

    token_endpoint.replace(responses.POST, TOKEN_URL,
                           json=grant_body(access_token="shpat_second_install", refresh_token="shprt_second"))
    assert client.get("/auth/callback", query_string=callback_params(begin(client))).status_code == 200

    [shop] = shops(db)
    assert shop.id == first_id
    assert shop.uninstalled_at is None and shop.is_installed
    assert rt.cipher.decrypt(shop.access_token) == "shpat_second_install"
    assert rt.cipher.decrypt(shop.refresh_token) == "shprt_second"
    assert setup_job_id(shop.id, shop.installed_at) in setup_jobs(redis)


def test_launch_for_an_installed_shop_shows_the_last_30_days(client, db, rt):
    from app.codes.reconciliation import PaidOrderFacts, reconcile
    from tests.helpers import issued_code, make_shop_with_programs, order_payload

    shop = make_shop_with_programs(db, rt.cipher, domain=SHOP)
    issued_code(db, shop, "WELCOME-PAGE01")
    issued_code(db, shop, "WELCOME-PAGE02")
    paid = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    reconcile(db, shop.id, PaidOrderFacts.from_webhook(order_payload(
        1001, [("WELCOME-PAGE01", "10.00")], total="90.00", processed_at=paid)), "webhook")
    db.commit()
    page = client.get("/", query_string=launch_params())
    assert page.status_code == 200
    assert "Last 30 days" in page.text and "50.0 %" in page.text
    assert "90.00 USD" in page.text and "10.00 USD" in page.text and "(1 order)" in page.text
    assert "0.00 USD without" in page.text  # nothing is still money in the store's currency
