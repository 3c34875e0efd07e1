"""devstore's app proxy: forwarded, signed and stripped as Shopify does it, to a real HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from devstore import checkout
from devstore.models import Installation
from devstore.state import app_proxy_config
from tests.devstore.conftest import DEVSTORE_KEY, DEVSTORE_SECRET, OTHER_SHOP, SHOP

PROXY_SCOPES = "read_customers,write_discounts,write_app_proxy"


@dataclass
class App:
    """A real HTTP server standing in for the app's proxy URL: records requests, answers ``answer``."""

    base_url: str = ""
    answer: tuple[int, dict[str, str], bytes] = (200, {"Content-Type": "application/liquid"}, b"<p>hello</p>")
    requests: list[Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        request = Request(environ)
        self.bodies.append(request.get_data())
        self.requests.append(request)
        status, headers, body = self.answer
        return Response(body, status=status, headers=headers)(environ, start_response)

    @property
    def last(self) -> Request:
        return self.requests[-1]


@pytest.fixture
def proxy_app() -> Iterator[App]:
    target = App()
    server = make_server("127.0.0.1", 0, target, threaded=True)
    target.base_url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield target
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


def install(devstore: Flask, shop: str = SHOP, scopes: str = PROXY_SCOPES) -> None:
    with devstore.extensions["devstore"].session() as session:
        session.add(Installation(shop=shop, client_id=DEVSTORE_KEY, scopes=scopes, installed=True,
                                 access_token="shpat_x"))


def customer(devstore: Flask, email: str, shop: str = SHOP) -> int:
    with devstore.extensions["devstore"].session() as session:
        return checkout.create_customer(session, shop, email=email).id


@pytest.fixture
def store(make_devstore: Callable[..., Flask], proxy_app: App) -> Flask:
    devstore = make_devstore(app_proxy_url=f"{proxy_app.base_url}/proxy")
    install(devstore)
    return devstore


def expected_signature(pairs: list[tuple[str, str]], secret: str = DEVSTORE_SECRET) -> str:
    """Shopify's documented algorithm, written out here rather than taken from app.shopify.proxy."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        if key != "signature":
            grouped.setdefault(key, []).append(value)
    message = "".join(f"{k}={','.join(v)}" for k, v in sorted(grouped.items()))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


# --- forwarding ------------------------------------------------------------------------------------

def test_a_storefront_request_is_forwarded_with_shopifys_signed_parameters(store: Flask, proxy_app: App):
    client = store.test_client()
    client.set_cookie("_shopify_y", "visitor-cookie")
    answer = client.get(f"/stores/{SHOP}/apps/oncecode/page/two?ref=spring%20sale&tag=b&tag=a",
                        headers={"Accept-Language": "de", "Authorization": "Bearer x"})
    assert answer.status_code == 200

    seen = proxy_app.last
    assert seen.path == "/proxy/page/two"
    pairs = parse_qsl(seen.query_string.decode(), keep_blank_values=True)
    assert [k for k, _ in pairs] == ["ref", "tag", "tag", "shop", "logged_in_customer_id", "path_prefix",
                                     "timestamp", "signature"]  # the visitor's first, then Shopify's
    values = dict(pairs)
    assert values["shop"] == SHOP and values["logged_in_customer_id"] == ""
    assert values["path_prefix"] == "/apps/oncecode"
    assert abs(int(values["timestamp"]) - time.time()) < 5
    assert values["signature"] == expected_signature(pairs)
    assert "Cookie" not in seen.headers and "Authorization" not in seen.headers  # Shopify forwards no cookies
    assert seen.headers["Accept-Language"] == "de"


@pytest.mark.parametrize(("path", "forwarded"), [
    (f"/stores/{SHOP}/apps/oncecode", "/proxy"),
    (f"/stores/{SHOP}/apps/oncecode/", "/proxy/"),
    (f"/stores/{SHOP}/apps/oncecode/a/b.json", "/proxy/a/b.json"),
])
def test_the_path_after_the_subpath_is_appended(store: Flask, proxy_app: App, path: str, forwarded: str):
    assert store.test_client().get(path).status_code == 200
    assert proxy_app.last.path == forwarded


def test_a_logged_in_customer_is_named_and_signed(store: Flask, proxy_app: App):
    ada = customer(store, "ada@example.com")
    client = store.test_client()
    logged = client.post(f"/_devstore/stores/{SHOP}/login", json={"customer_id": ada})
    assert logged.status_code == 200 and logged.json["customer_id"] == ada
    assert logged.json["app_proxy"]["path"] == f"/stores/{SHOP}/apps/oncecode"

    page = client.get(f"/stores/{SHOP}/apps/oncecode")
    pairs = parse_qsl(proxy_app.last.query_string.decode(), keep_blank_values=True)
    assert dict(pairs)["logged_in_customer_id"] == str(ada)
    assert dict(pairs)["signature"] == expected_signature(pairs)
    assert "logged in as ada@example.com" in page.text

    # Per store: the same browser is a guest on another store.
    install(store, OTHER_SHOP)
    client.get(f"/stores/{OTHER_SHOP}/apps/oncecode")
    assert dict(parse_qsl(proxy_app.last.query_string.decode(), keep_blank_values=True))["logged_in_customer_id"] == ""

    assert client.post(f"/_devstore/stores/{SHOP}/logout").json["customer_id"] is None
    client.get(f"/stores/{SHOP}/apps/oncecode")
    assert dict(parse_qsl(proxy_app.last.query_string.decode(), keep_blank_values=True))["logged_in_customer_id"] == ""


def test_a_post_is_forwarded_with_its_body(store: Flask, proxy_app: App):
    store.test_client().post(f"/stores/{SHOP}/apps/oncecode/share", data={"to": "friend"})
    assert proxy_app.last.method == "POST" and proxy_app.bodies[-1] == b"to=friend"
    assert proxy_app.last.headers["Content-Type"] == "application/x-www-form-urlencoded"


# --- answers -----------------------------------------------------------------------------------------

def test_a_liquid_answer_is_rendered_inside_the_store_layout(store: Flask, proxy_app: App):
    ada = customer(store, "ada@example.com")
    proxy_app.answer = (200, {"Content-Type": "application/liquid; charset=utf-8", "Set-Cookie": "app=1",
                              "Cache-Control": "private, no-store"},
                        b"<p>Hi {{ customer.email }} at {{ shop.name }}</p>"
                        b"<a href=\"{{ routes.account_login_url }}\">x</a>"
                        b"<p>&#123;&#123; customer.email &#125;&#125;</p>")
    client = store.test_client()
    client.post(f"/_devstore/stores/{SHOP}/login", json={"customer_id": ada})
    page = client.get(f"/stores/{SHOP}/apps/oncecode")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<p>Hi ada@example.com at Demo</p>" in page.text  # Liquid ran, as in a theme
    assert f'href="/stores/{SHOP}/account/login"' in page.text
    assert "<p>&#123;&#123; customer.email &#125;&#125;</p>" in page.text  # inert text stays inert
    assert "Set-Cookie" not in page.headers  # never passed back
    assert page.headers["Cache-Control"] == "private, no-store"
    assert 'id="proxied"' in page.text and "Demo" in page.text  # the store's layout around it


def test_a_liquid_error_is_shown_not_raised(store: Flask, proxy_app: App):
    proxy_app.answer = (200, {"Content-Type": "application/liquid"}, b"{% if %}")
    page = store.test_client().get(f"/stores/{SHOP}/apps/oncecode")
    assert page.status_code == 200 and "Liquid error: missing expression" in page.text


def test_other_answers_pass_through_with_their_status(store: Flask, proxy_app: App):
    proxy_app.answer = (401, {"Content-Type": "text/plain; charset=utf-8", "Set-Cookie": "a=1"},
                        b"invalid app proxy signature\n")
    page = store.test_client().get(f"/stores/{SHOP}/apps/oncecode")
    assert page.status_code == 401 and page.text == "invalid app proxy signature\n"
    assert page.headers["Content-Type"] == "text/plain; charset=utf-8" and "Set-Cookie" not in page.headers

    proxy_app.answer = (302, {"Location": "/apps/oncecode/elsewhere"}, b"")
    moved = store.test_client().get(f"/stores/{SHOP}/apps/oncecode")
    assert moved.status_code == 302 and moved.headers["Location"] == "/apps/oncecode/elsewhere"


def test_an_app_that_does_not_answer_is_a_502_page(make_devstore: Callable[..., Flask]):
    store = make_devstore(app_proxy_url="http://127.0.0.1:9/proxy")  # nothing listens on the discard port
    install(store)
    page = store.test_client().get(f"/stores/{SHOP}/apps/oncecode")
    assert page.status_code == 502 and "did not answer" in page.text


@pytest.mark.parametrize(("setup", "path", "reason"), [
    (lambda store: None, f"/stores/{OTHER_SHOP}/apps/oncecode", "not installed"),
    (lambda store: install(store, OTHER_SHOP, scopes="read_customers"), f"/stores/{OTHER_SHOP}/apps/oncecode",
     "lacks write_app_proxy"),
    (lambda store: None, f"/stores/{SHOP}/apps/other", "the app proxy is /apps/oncecode"),
    (lambda store: None, f"/stores/{SHOP}/tools/oncecode", "the app proxy is /apps/oncecode"),
    (lambda store: None, "/stores/nowhere.myshopify.com/apps/oncecode", "no store"),
])
def test_no_proxy_where_shopify_would_have_none(store: Flask, proxy_app: App, setup, path: str, reason: str):
    setup(store)
    page = store.test_client().get(path)
    assert page.status_code == 404 and reason in page.text
    assert proxy_app.requests == []


def test_without_a_proxy_url_there_is_no_proxy(make_devstore: Callable[..., Flask]):
    store = make_devstore()
    install(store)
    page = store.test_client().get(f"/stores/{SHOP}/apps/oncecode")
    assert page.status_code == 404 and "no proxy URL is configured" in page.text


# --- logging in ---------------------------------------------------------------------------------------

def test_the_login_page_and_the_store_page_switch_the_customer(store: Flask, proxy_app: App):
    ada = customer(store, "ada@example.com")
    client = store.test_client()
    form = client.get(f"/stores/{SHOP}/account/login?return_url=/stores/{SHOP}/apps/oncecode")
    assert form.status_code == 200 and "ada@example.com" in form.text

    back = client.post(f"/stores/{SHOP}/account/login",
                       data={"customer_id": str(ada), "return_url": f"/stores/{SHOP}/apps/oncecode"})
    assert back.status_code == 303 and back.headers["Location"] == f"/stores/{SHOP}/apps/oncecode"
    assert client.get(f"/_devstore/stores/{SHOP}/storefront").json["customer_id"] == ada

    store_page = client.get(f"/stores/{SHOP}")
    assert 'id="storefront"' in store_page.text and f'<option value="{ada}" selected>' in store_page.text
    assert f'href="/stores/{SHOP}/apps/oncecode"' in store_page.text

    out = client.get(f"/stores/{SHOP}/account/logout?return_url=//evil.example")
    assert out.status_code == 303 and out.headers["Location"] == f"/stores/{SHOP}"  # never an open redirect
    assert client.get(f"/_devstore/stores/{SHOP}/storefront").json["customer_id"] is None


@pytest.mark.parametrize(("body", "status"), [({"customer_id": 123}, 404), ({"customer_id": "x"}, 400),
                                              ({}, 400), ([], 400)])
def test_logging_in_as_someone_the_store_does_not_have_is_refused(store: Flask, body, status: int):
    answer = store.test_client().post(f"/_devstore/stores/{SHOP}/login", json=body)
    assert answer.status_code == status and "error" in answer.json


def test_the_proxy_config_follows_shopify_app_toml(tmp_path):
    toml = tmp_path / "shopify.app.toml"
    toml.write_text('[app_proxy]\nurl = "https://oncecode.example.com/proxy"\nprefix = "a"\nsubpath = "rewards"\n')
    assert app_proxy_config({"APP_URL": "http://127.0.0.1:8000/"}, toml) == {
        "prefix": "a", "subpath": "rewards", "url": "http://127.0.0.1:8000/proxy"}
    assert app_proxy_config({"APP_URL": "http://x", "DEVSTORE_APP_PROXY_URL": "http://y/p"}, toml)["url"] == "http://y/p"
    assert "url" not in app_proxy_config({}, toml)
    assert urlsplit(app_proxy_config({"APP_URL": "http://x"})["url"]).path == "/proxy"  # the repository's own
