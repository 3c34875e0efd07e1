"""Security headers (app/headers.py): every answer is ``nosniff`` with ``Referrer-Policy: no-referrer``;
every HTML answer may be framed only by the admin of the shop the request *proved* it comes from."""

from __future__ import annotations

import pytest

from app.web import session_token_shop
from tests.auth.test_install import SHOP, begin, callback_params, launch_params, token_endpoint  # noqa: F401
from tests.helpers import make_shop_with_programs, post_webhook, session_token

FRAMED_BY_SHOP = f"frame-ancestors https://{SHOP} https://admin.shopify.com"
NOT_FRAMED = "frame-ancestors 'none'"


def assert_every_answer_headers(response) -> None:  # type: ignore[no-untyped-def]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 200),  # the welcome page
    ("GET", f"/auth?shop={SHOP}", 302),
    ("GET", "/auth", 400),
    ("GET", "/auth/callback", 400),
    ("GET", "/?shop=demo.myshopify.com&hmac=00", 403),
    ("GET", "/healthz", 200),
    ("GET", "/api/programs", 401),
    ("GET", "/api/codes?limit=%C2%B2", 401),
    ("POST", "/webhooks", 401),
    ("GET", "/nowhere", 404),
    ("DELETE", "/healthz", 405),
    ("GET", "/static/app.css", 200),
])
def test_every_answer_is_nosniff_without_a_referrer(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert_every_answer_headers(response)
    if response.mimetype == "text/html":
        assert response.headers["Content-Security-Policy"] == NOT_FRAMED  # nothing here proved a shop


def test_an_unverified_shop_parameter_never_reaches_the_frame_policy(client):
    # /auth takes ?shop= from anyone (it only starts the OAuth dance): its HTML redirect is not framable.
    response = client.get("/auth?shop=attacker.myshopify.com")
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == NOT_FRAMED


def test_a_verified_launch_may_be_framed_by_its_shops_admin(client):
    response = client.get("/", query_string=launch_params(embedded="1"))  # the page that leaves the iframe
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == FRAMED_BY_SHOP
    assert_every_answer_headers(response)


def test_the_status_page_of_an_installed_shop_may_be_framed_by_its_admin(client, db, rt):
    make_shop_with_programs(db, rt.cipher, domain=SHOP)
    response = client.get("/", query_string=launch_params(shop="Demo.myshopify.com"))
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == FRAMED_BY_SHOP  # the shop as verified, lower-cased


def test_a_launch_with_a_bad_signature_is_not_framable(client):
    params = {**launch_params(), "hmac": "0" * 64}
    response = client.get("/", query_string=params, headers={"Accept": "text/html"})
    assert response.status_code == 403
    assert "frame-ancestors https://" not in response.headers.get("Content-Security-Policy", "")


def test_the_installed_page_may_be_framed_by_its_shops_admin(client, token_endpoint):  # noqa: F811
    state = begin(client)
    response = client.get("/auth/callback", query_string=callback_params(state))
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == FRAMED_BY_SHOP
    assert_every_answer_headers(response)


def test_a_stale_callback_proves_nothing(client, token_endpoint):  # noqa: F811
    state = begin(client)
    params = callback_params(state, timestamp="1000000000")
    response = client.get("/auth/callback", query_string=params)
    assert response.status_code == 403 and "Content-Security-Policy" not in response.headers
    assert_every_answer_headers(response)


def test_a_session_token_proves_the_shop_for_html(app_factory):
    # No HTML page is behind a session token yet (the admin pages will be): one made here, on a test app.
    app = app_factory()
    app.add_url_rule("/html-for-a-token", "html_for_a_token",
                     lambda: f"<p>{session_token_shop()}</p>")
    client = app.test_client()
    framed = client.get("/html-for-a-token", headers={"Authorization": f"Bearer {session_token(SHOP)}"})
    assert framed.status_code == 200 and framed.headers["Content-Security-Policy"] == FRAMED_BY_SHOP
    refused = client.get("/html-for-a-token?shop=demo.myshopify.com")
    assert refused.status_code == 401 and "Content-Security-Policy" not in refused.headers  # text/plain


def test_json_api_answers_carry_the_headers(client, db, rt):
    make_shop_with_programs(db, rt.cipher, domain=SHOP)
    response = client.get("/api/programs", headers={"Authorization": f"Bearer {session_token(SHOP)}"})
    assert response.status_code == 200
    assert_every_answer_headers(response)


def test_a_signed_webhook_answer_carries_the_headers(client):
    response = post_webhook(client, "customers/create", SHOP, {"id": 1})
    assert response.status_code == 200
    assert_every_answer_headers(response)


def test_a_rate_limited_answer_carries_the_headers(app_factory):
    client = app_factory(public_rate_limit="1 per minute").test_client()
    assert client.get("/").status_code == 200
    limited = client.get("/")
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert_every_answer_headers(limited)


def test_a_500_carries_the_headers(app_factory):
    app = app_factory()
    app.add_url_rule("/broken", "broken", lambda: 1 / 0)
    response = app.test_client().get("/broken")
    assert response.status_code == 500
    assert_every_answer_headers(response)

