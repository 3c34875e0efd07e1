"""The embedded admin's frame: every page verified from its id_token (the shop from the token only),
the session-token page for a page without one, App Bridge in the head, the admin's frame policy, and
a managed installation's token exchange — exactly once under concurrent first opens."""

from __future__ import annotations

import re
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from rq import Queue
from sqlalchemy import func, select

from app.config import DEFAULT_SCOPES, SHOPIFY_APP_BRIDGE_URL
from app.models import Shop
from app.shopify.oauth import TOKEN_EXCHANGE
from tests.auth.test_install import HOST, grant_body
from tests.conftest import API_KEY
from tests.helpers import make_shop_with_programs, session_token

SHOP = "demo.myshopify.com"
OTHER = "other.myshopify.com"
TOKEN_URL = f"https://{SHOP}/admin/oauth/access_token"


def open_page(client, token: str | None, path: str = "/admin/", **query: str):  # type: ignore[no-untyped-def]
    params = {"embedded": "1", "host": HOST, "shop": SHOP, **query}
    if token is not None:
        params["id_token"] = token
    return client.get(path, query_string=params)


@pytest.fixture
def installed(db, rt) -> Shop:
    shop = make_shop_with_programs(db, rt.cipher, domain=SHOP)
    shop.scopes = DEFAULT_SCOPES
    db.commit()
    return shop


@pytest.fixture
def token_endpoint():  # type: ignore[no-untyped-def]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(TOKEN_URL, json=grant_body())
        yield mock


def test_a_page_with_a_valid_id_token_renders_embedded(client, installed, token_endpoint):
    page = open_page(client, session_token(SHOP))
    assert page.status_code == 200, page.text
    html = page.text
    assert f'<meta name="shopify-api-key" content="{API_KEY}">' in html
    head = html[:html.index("</head>")]
    # App Bridge first, as it is (no defer/async); then only our own script, from our origin.
    assert re.findall(r"<script[^>]*>", head) == [f'<script src="{SHOPIFY_APP_BRIDGE_URL}">',
                                                  '<script src="/static/admin.js" defer>']
    assert "<s-app-nav>" in html and SHOP in html
    assert page.headers["Content-Security-Policy"] == f"frame-ancestors https://{SHOP} https://admin.shopify.com"
    assert len(token_endpoint.calls) == 0  # a token we hold: no exchange


def test_the_shop_comes_from_the_token_never_the_query(client, installed, db, rt, token_endpoint):
    other = make_shop_with_programs(db, rt.cipher, domain=OTHER)
    other.scopes = DEFAULT_SCOPES
    db.commit()
    page = open_page(client, session_token(OTHER), shop=SHOP)
    assert page.status_code == 200 and OTHER in page.text and SHOP not in page.text.replace(
        f"shop={SHOP}", "")
    assert page.headers["Content-Security-Policy"].startswith(f"frame-ancestors https://{OTHER} ")


def test_a_page_without_a_token_or_with_an_expired_one_goes_for_a_fresh_one(client, installed):
    for token in (None, session_token(SHOP, exp=int(time.time()) - 60)):
        page = open_page(client, token, locale="de")
        assert page.status_code == 302
        target = urlsplit(page.headers["Location"])
        query = parse_qs(target.query)
        assert target.path == "/admin/session-token"
        assert query["shop"] == [SHOP] and query["host"] == [HOST]
        reload = urlsplit(query["shopify-reload"][0])
        assert reload.path == "/admin/" and "id_token" not in parse_qs(reload.query)
        assert parse_qs(reload.query)["locale"] == ["de"]


@pytest.mark.parametrize("claims", [
    {"secret": "not-the-app-secret-0123456789abcdef"},
    {"audience": "another-app"},
    {"nbf": "in two minutes"},
    {"exp": None},
    {"iss": f"https://{OTHER}/admin"},
    {"dest": "https://evil.example.com"},
], ids=["signature", "audience", "not-yet-valid", "no-exp", "issuer", "destination"])
def test_a_token_that_fails_its_checks_is_refused_401(client, installed, claims):
    claims = dict(claims)
    if claims.get("nbf") == "in two minutes":  # computed now, not when the tests were collected
        claims["nbf"] = int(time.time()) + 120
    secret = claims.pop("secret", None)
    audience = claims.pop("audience", None)
    if claims.get("exp", 0) is None:
        import jwt

        from tests.conftest import API_SECRET
        body = jwt.decode(session_token(SHOP), options={"verify_signature": False})
        body.pop("exp")
        token = jwt.encode(body, API_SECRET, algorithm="HS256")
    else:
        kwargs = {"secret": secret} if secret else {}
        token = session_token(SHOP, audience=audience, **kwargs, **claims)
    page = open_page(client, token)
    assert page.status_code == 401, page.text
    assert "Open OnceCode from your Shopify admin" in page.text
    assert page.headers["Content-Security-Policy"] == "frame-ancestors 'none'"


def test_the_session_token_page_loads_app_bridge_and_nothing_else(client):
    page = client.get("/admin/session-token", query_string={"shop": SHOP, "host": HOST,
                                                              "shopify-reload": "/admin/?shop=" + SHOP})
    assert page.status_code == 200
    assert f'data-api-key="{API_KEY}" src="{SHOPIFY_APP_BRIDGE_URL}"' in page.text and "<main" not in page.text
    assert page.headers["Content-Security-Policy"] == f"frame-ancestors https://{SHOP} https://admin.shopify.com"


@pytest.mark.parametrize("query", [
    {"shopify-reload": "/admin/"},
    {"shop": "evil.example.com", "shopify-reload": "/admin/"},
    {"shop": SHOP},
    {"shop": SHOP, "shopify-reload": "https://evil.example.com/admin/"},
    {"shop": SHOP, "shopify-reload": "//evil.example.com/admin/"},
    {"shop": SHOP, "shopify-reload": "/auth?shop=x"},
], ids=["no-shop", "bad-shop", "no-reload", "absolute", "protocol-relative", "not-admin"])
def test_the_session_token_page_refuses_what_it_cannot_send_back(client, query):
    page = client.get("/admin/session-token", query_string=query)
    assert page.status_code == 400 and "frame-ancestors https" not in page.headers.get("Content-Security-Policy", "")


def test_the_launch_inside_the_admin_goes_on_to_the_embedded_home(client):
    launched = client.get("/", query_string={"shop": SHOP, "host": HOST, "embedded": "1", "id_token": "x.y.z"})
    assert launched.status_code == 302
    target = urlsplit(launched.headers["Location"])
    assert target.path == "/admin/" and parse_qs(target.query)["id_token"] == ["x.y.z"]


# --- managed installation ---------------------------------------------------------------------------

def test_a_managed_installation_is_installed_on_its_first_open_by_token_exchange(client, db, rt, token_endpoint):
    page = open_page(client, token := session_token(SHOP))
    assert page.status_code == 200, page.text
    [call] = token_endpoint.calls
    sent = parse_qs(call.request.body)
    assert {name: sent[name] for name in TOKEN_EXCHANGE} == {name: [value] for name, value in TOKEN_EXCHANGE.items()}
    assert sent["subject_token"] == [token] and sent["expiring"] == ["1"] and sent["client_id"] == [API_KEY]
    shop = db.scalars(select(Shop).where(Shop.domain == SHOP)).one()
    assert shop.is_installed and shop.scopes == DEFAULT_SCOPES and shop.refresh_token is not None
    assert rt.cipher.decrypt(shop.access_token) == grant_body()["access_token"]
    assert Queue("default", connection=rt.redis).count == 1  # the post-install set-up, queued once
    assert open_page(client, session_token(SHOP)).status_code == 200
    assert len(token_endpoint.calls) == 1  # held now: never exchanged again


def test_concurrent_first_opens_exchange_the_token_once(app, db, rt, token_endpoint):
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def first_open() -> None:
        client = app.test_client()
        token = session_token(SHOP)
        barrier.wait()
        statuses.append(open_page(client, token).status_code)

    threads = [threading.Thread(target=first_open) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 8
    assert len(token_endpoint.calls) == 1
    assert db.scalar(select(func.count()).select_from(Shop)) == 1
    assert Queue("default", connection=rt.redis).count == 1


def test_scopes_granted_short_of_ours_name_what_is_missing_and_store_nothing(client, db, token_endpoint):
    token_endpoint.replace(responses.POST, TOKEN_URL, json=grant_body(scope="read_customers,write_discounts"))
    page = open_page(client, session_token(SHOP))
    assert page.status_code == 403
    for scope in ("write_customers", "read_orders", "write_app_proxy"):
        assert f"<code>{scope}</code>" in page.text
    assert "approve the update" in page.text
    assert db.scalar(select(func.count()).select_from(Shop)) == 0


def test_a_store_refusing_the_exchange_is_a_page_that_says_what_to_do(client, db, token_endpoint):
    token_endpoint.replace(responses.POST, TOKEN_URL, status=400,
                           json={"error": "invalid_subject_token", "error_description": "bad"})
    page = open_page(client, session_token(SHOP))
    assert page.status_code == 403 and "Reinstall OnceCode" in page.text
    assert db.scalar(select(func.count()).select_from(Shop)) == 0
    token_endpoint.replace(responses.POST, TOKEN_URL, status=503)
    page = open_page(client, session_token(SHOP))
    assert page.status_code == 503 and "Reload the page in a moment" in page.text


def test_an_installed_shop_missing_a_newer_scope_is_exchanged_again(client, installed, db, token_endpoint):
    installed.scopes = "read_customers,write_customers,read_orders,read_discounts,write_discounts"
    db.commit()
    assert open_page(client, session_token(SHOP)).status_code == 200
    assert len(token_endpoint.calls) == 1
    db.expire_all()
    assert "write_app_proxy" in db.get(Shop, installed.id).scopes
