"""devstore's admin page and App Bridge stand-in in a real browser (Chromium, headless, Playwright).

Not collected by pytest (Playwright is not a test dependency yet). Run it with a Python that has
Playwright and the project's packages, e.g.::

    PYTHONPATH=.:/work/main/.venv/lib/python3.11/site-packages /tmp/pw/bin/python tests/devstore/browser_check.py

It serves devstore and a trivial embedded app (``sample_app``: verifies its launch and session tokens
with app/shopify/verify.py, loads the stand-in, has an ``<s-app-nav>``, a ``<form data-save-bar>``, a
toast and an API call) on free local ports, then drives the admin page: managed install, the framed
launch, fresh tokens on ``fetch``, the sidebar nav, the save bar, toasts, the ``shopify-reload`` bounce,
an app page with another client id, and the app opened outside the admin. Screenshots go to
``SHOTS`` (default /work/wt/shots) as devadmin-*.png. Exit code 0 when every check passed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request
from werkzeug.serving import make_server

import devstore
from app.shopify.verify import InvalidSessionToken, decode_session_token
from devstore.state import DevstoreConfig

KEY, SECRET = "browser-check-client-id", "browser-check-secret-0123456789abcdef"
SHOP, OTHER = "demo.myshopify.com", "other.myshopify.com"
SHOTS = Path(os.environ.get("SHOTS", "/work/wt/shots"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(app: Flask, port: int) -> Any:
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- a trivial embedded app ------------------------------------------------------------------------

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="shopify-api-key" content="{key}">
<script src="{bridge}"></script>
<title>{title}</title>
<style>body{{font:14px/1.5 system-ui,sans-serif;margin:0;padding:20px;background:#f1f1f1;color:#303030}}
.card{{background:#fff;border-radius:12px;padding:16px;margin-bottom:16px;box-shadow:0 0 0 1px #e3e3e3 inset}}
button{{background:#303030;color:#fff;border:0;border-radius:8px;padding:8px 14px;font:inherit}}
input{{padding:7px 10px;border:1px solid #8a8a8a;border-radius:8px;font:inherit}}</style>
</head><body>
<s-app-nav><s-link href="/" rel="home">Home</s-link><s-link href="/settings">Settings</s-link>
<a href="/codes">Codes</a></s-app-nav>
<h1>{title}</h1>
<div class="card"><p id="who">{who}</p>
<button id="call">Call the API</button> <span id="api"></span>
<button id="toast">Show a toast</button></div>
{body}
<script>
document.getElementById("call").onclick = async () => {{
  const answer = await fetch("/api/whoami");
  document.getElementById("api").textContent = answer.status + " " + (await answer.text());
}};
document.getElementById("toast").onclick = () => shopify.toast.show("Saved the sample");
</script>
</body></html>"""


def sample_app(bridge_url: str, admin_origin: str, saved: dict[str, str]) -> Flask:
    app = Flask("sample_app")

    def page(title: str, body: str = "", key: str = KEY) -> Response:
        shop = verified_launch()
        if isinstance(shop, Response):
            return shop
        html = PAGE.format(key=key, bridge=bridge_url, title=title, who=f"Verified launch for {shop}", body=body)
        response = Response(html, mimetype="text/html")
        # The admin here is devstore: it frames the app (Shopify's would be admin.shopify.com).
        response.headers["Content-Security-Policy"] = f"frame-ancestors {admin_origin}"
        return response

    def verified_launch() -> str | Response:
        """The document request's id_token (and, at a launch, its hmac); none: the bounce page."""
        token = request.args.get("id_token")
        if not token:
            query = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "id_token"])
            target = request.path + (f"?{query}" if query else "")
            return redirect("/bounce?" + urlencode({"shopify-reload": target}))
        # As Shopify's verify_app_home_req: the id_token proves the request (a launch's hmac does not
        # survive the bounce, which adds a new id_token to the signed query).
        try:
            return decode_session_token(f"Bearer {token}", KEY, [SECRET])
        except InvalidSessionToken as exc:
            return Response(f"bad id_token: {exc}", status=401)

    @app.get("/")
    def home():  # type: ignore[no-untyped-def]
        return page("Sample home")

    @app.get("/codes")
    def codes():  # type: ignore[no-untyped-def]
        return page("Sample codes")

    @app.route("/settings", methods=["GET", "POST"])
    def settings():  # type: ignore[no-untyped-def]
        if request.method == "POST":
            saved["greeting"] = request.form.get("greeting", "")
            return redirect("/settings?" + urlencode([(k, request.args[k]) for k in ("embedded", "host", "shop")
                                                      if k in request.args]))
        form = ('<form class="card" method="post" data-save-bar data-discard-confirmation>'
                f'<label>Greeting <input name="greeting" value="{saved.get("greeting", "Hello")}"></label>'
                f'<p id="saved">Saved: {saved.get("greeting", "Hello")}</p></form>')
        return page("Sample settings", form)

    @app.get("/wrong-key")
    def wrong_key():  # type: ignore[no-untyped-def]
        return page("Another app's page", key="someone-elses-client-id")

    @app.get("/bounce")
    def bounce():  # type: ignore[no-untyped-def]
        html = (f'<!doctype html><meta name="shopify-api-key" content="{KEY}"><script src="{bridge_url}"></script>'
                "<p>Getting a session token…</p>")
        response = Response(html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = f"frame-ancestors {admin_origin}"
        return response

    flaky_calls: list[str] = []

    @app.get("/api/flaky")
    def flaky():  # type: ignore[no-untyped-def]
        """401 asking for a retry the first time, as Shopify's libraries answer a stale token."""
        flaky_calls.append(request.headers.get("Authorization", ""))
        if len(flaky_calls) == 1:
            return Response("stale", status=401, headers={"X-Shopify-Retry-Invalid-Session-Request": "1"})
        return jsonify(calls=len(flaky_calls), fresh=flaky_calls[0] != flaky_calls[1])

    @app.get("/api/whoami")
    def whoami():  # type: ignore[no-untyped-def]
        try:
            shop = decode_session_token(request.headers.get("Authorization"), KEY, [SECRET])
        except InvalidSessionToken as exc:
            response = jsonify(error=str(exc))
            response.status_code = 401
            response.headers["X-Shopify-Retry-Invalid-Session-Request"] = "1"
            return response
        return jsonify(shop=shop, locale=request.headers.get("Accept-Language"))

    return app


# --- the checks ------------------------------------------------------------------------------------

def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def control(store_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(store_url + path, data=data, method=method,  # noqa: S310 - local devstore
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as answer:  # noqa: S310 - our own local devstore
        return json.loads(answer.read())


def main() -> int:
    from playwright.sync_api import expect, sync_playwright

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    store_port, app_port = free_port(), free_port()
    store_url, app_url = f"http://127.0.0.1:{store_port}", f"http://127.0.0.1:{app_port}"
    store = devstore.create_app(DevstoreConfig(api_key=KEY, api_secret=SECRET, deliver_webhooks=False,
                                               app_url=app_url))
    saved: dict[str, str] = {}
    servers = [serve(store, store_port), serve(sample_app(f"{store_url}/_devstore/app-bridge.js", store_url, saved),
                                               app_port)]
    SHOTS.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []

    def check(name: str, test: Callable[[], Any]) -> None:
        try:
            test()
        except Exception as exc:  # noqa: BLE001 - report every failed check, then fail
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            print(f"FAIL {name}: {exc}", flush=True)
        else:
            print(f"ok   {name}", flush=True)

    admin = f"{store_url}/stores/{SHOP}/admin/apps/oncecode"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def install_page() -> None:
                page.goto(f"{store_url}/stores/{OTHER}/admin/apps/oncecode")
                expect(page.get_by_role("button", name="Install")).to_be_visible()
                page.screenshot(path=str(SHOTS / "devadmin-install.png"))
            check("a store without the app offers the installs", install_page)

            def managed_then_framed() -> None:
                control(store_url, "POST", f"/_devstore/stores/{SHOP}/managed_install")
                page.goto(admin)
                frame = page.frame_locator("#app-frame")
                expect(frame.locator("#who")).to_have_text(f"Verified launch for {SHOP}")
                expect(page.locator("#app-nav a")).to_have_text(["Settings", "Codes"])
                expect(page.locator("#app-home-link")).to_have_class("app-link current")
                page.screenshot(path=str(SHOTS / "devadmin-admin.png"))
            check("managed install, then the admin frames the verified launch with the app's nav", managed_then_framed)

            def fetch_carries_token() -> None:
                frame = page.frame_locator("#app-frame")
                frame.locator("#call").click()
                expect(frame.locator("#api")).to_contain_text(f'"shop":"{SHOP}"')
                expect(frame.locator("#api")).to_contain_text('"locale":"en"')
                app_frame = page.frame(url=lambda url: url.startswith(app_url))
                token = app_frame.evaluate("shopify.idToken()")
                claims = claims_of(token)
                assert claims["dest"] == f"https://{SHOP}" and claims["exp"] - claims["iat"] == 60, claims
                retried = app_frame.evaluate("fetch('/api/flaky').then(r => r.json())")
                assert retried == {"calls": 2, "fresh": True}, retried
                config = app_frame.evaluate("({...shopify.config})")
                assert (config["apiKey"], config["shop"]) == (KEY, SHOP), config
            check("fetch to the app carries a fresh session token (retried once on a 401 asking for it); "
                  "idToken(), config", fetch_carries_token)

            def toast() -> None:
                page.frame_locator("#app-frame").locator("#toast").click()
                expect(page.locator("#toasts .toast")).to_have_text("Saved the sample")
                page.screenshot(path=str(SHOTS / "devadmin-toast.png"))
            check("shopify.toast.show() shows the admin's toast", toast)

            def nav_and_save_bar() -> None:
                page.locator("#app-nav a", has_text="Settings").click()
                page.wait_for_url(f"{admin}/settings")
                frame = page.frame_locator("#app-frame")
                expect(frame.locator("#saved")).to_have_text("Saved: Hello")
                expect(page.locator("#app-nav a", has_text="Settings")).to_have_class("current")
                field = frame.locator("input[name=greeting]")
                field.fill("Bonjour")
                expect(page.locator("#save-bar")).to_be_visible()
                page.screenshot(path=str(SHOTS / "devadmin-savebar.png"))
                page.locator("#app-nav a", has_text="Codes").click()  # blocked while unsaved
                assert page.url == f"{admin}/settings", page.url
                page.once("dialog", lambda dialog: dialog.accept())
                page.locator("#save-bar button[data-action=discard]").click()
                expect(field).to_have_value("Hello")
                expect(page.locator("#save-bar")).to_be_hidden()
                field.fill("Hej")
                page.locator("#save-bar button[data-action=save]").click()
                expect(frame.locator("#saved")).to_have_text("Saved: Hej")
                expect(page.locator("#save-bar")).to_be_hidden()
                assert saved == {"greeting": "Hej"}, saved
            check("sidebar nav loads the page, highlighted; save bar: blocks leaving, discards, saves",
                  nav_and_save_bar)

            def bounce() -> None:
                frame = page.frame_locator("#app-frame")
                frame.locator("s-app-nav a", has_text="Codes").evaluate("a => { a.click(); }")  # plain link, no token
                expect(frame.locator("h1")).to_have_text("Sample codes")
                expect(frame.locator("#who")).to_have_text(f"Verified launch for {SHOP}")
                page.wait_for_url(f"{admin}/codes")
                expect(page.locator("#app-nav a", has_text="Codes")).to_have_class("current")
            check("a page opened without id_token bounces through shopify-reload and gets one", bounce)

            def wrong_key() -> None:
                page.goto(f"{admin}/wrong-key")
                expect(page.locator("#toasts .toast.error")).to_contain_text("shopify-api-key")
                app_frame = page.frame(url=lambda url: url.startswith(f"{app_url}/wrong-key"))
                refused = app_frame.evaluate("shopify.idToken().then(() => 'minted', e => e.message)")
                assert "shopify-api-key" in refused, refused
            check("a page with another client id gets no session token", wrong_key)

            def outside_the_admin() -> None:
                launch = control(store_url, "GET", f"/_devstore/stores/{SHOP}/app_launch?path=/")
                page.goto(launch["url"])
                expect(page.locator("s-app-nav a")).to_have_text(["Home", "Settings", "Codes"])
                refused = page.evaluate("shopify.idToken().then(() => 'minted', e => e.message)")
                assert "not framed" in refused, refused
                page.screenshot(path=str(SHOTS / "devadmin-unframed.png"))
            check("outside the admin the nav shows as plain links and no token is minted", outside_the_admin)

            check("no script errors", lambda: not errors or (_ for _ in ()).throw(AssertionError(errors)))
            narrow = browser.new_page(viewport={"width": 360, "height": 740})
            narrow.goto(admin)
            expect(narrow.frame_locator("#app-frame").locator("#who")).to_have_text(f"Verified launch for {SHOP}")
            narrow.screenshot(path=str(SHOTS / "devadmin-admin-360.png"))
            exchanges = control(store_url, "GET", f"/_devstore/stores/{SHOP}/token_exchanges")
            print(f"token exchanges on {SHOP}: {exchanges['count']} (the sample app does not exchange)")
            browser.close()
    finally:
        for server in servers:
            server.shutdown()
    print(f"{len(failures)} failed" if failures else "all checks passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
