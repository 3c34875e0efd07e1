"""The storefront's side of the app: the app proxy, and a customer who can log in to see it.

``/stores/<shop>/<prefix>/<subpath>/...`` (``apps/oncecode`` from the app's ``[app_proxy]``) is forwarded
to the app's proxy URL as Shopify forwards it: the path after the subpath appended, the visitor's
query kept and Shopify's parameters added — ``shop``, ``logged_in_customer_id`` (empty when nobody is
logged in), ``path_prefix``, ``timestamp`` and ``signature`` (hex HMAC-SHA256 with the client secret over
the sorted ``key=value`` pairs, repeated values joined by ``,``, no separator). The visitor's cookies
are not forwarded and the app's ``Set-Cookie`` is not passed back, as on Shopify. An answer with
``Content-Type: application/liquid`` is rendered as Liquid (python-liquid, with ``shop``, ``customer``
and ``routes`` objects like a theme's) inside a small store layout; any other answer is passed through.
The proxy exists while the app is installed with the ``write_app_proxy`` scope, as on Shopify.

Logging in: devstore has no passwords. ``/stores/<shop>/account/login`` (Shopify's path) lets a person
pick one of the store's customers, the store page has the same switch, and the control API
``POST /_devstore/stores/<shop>/login`` does it for scripts; the choice lives in devstore's signed
session cookie, per store, like a storefront's customer session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import liquid
import requests
from flask import Blueprint, Response, jsonify, redirect, render_template, request, session, url_for
from markupsafe import Markup
from sqlalchemy import select

from app.shopify.proxy import proxy_signature
from devstore import checkout, pages
from devstore.control import bp as control_bp  # the control API's blueprint: its error answers, its JSON body
from devstore.errors import DevstoreError, InvalidInput, NotFound
from devstore.models import Customer, Installation
from devstore.state import DevstoreConfig
from devstore.web import current_state

bp = Blueprint("storefront", __name__)
log = logging.getLogger(__name__)

PREFIXES = "apps, a, community, tools"  # the prefixes Shopify lets an app proxy (and a merchant) choose
SESSION_KEY = "storefront_customers"  # {shop: customer id} in devstore's signed session cookie
# What a browser sends that the proxy passes on; the rest (Cookie first of all) stays at the store.
FORWARDED_REQUEST_HEADERS = ("Accept", "Accept-Language", "Content-Type", "User-Agent")
# What the app answers that reaches the browser; Set-Cookie never does.
RETURNED_HEADERS = ("Content-Type", "Location", "Cache-Control")
TIMEOUT = (5, 10)  # connect, read: a proxy waits a while, never for ever


# --- who is logged in ----------------------------------------------------------------------------

def logged_in_customer(shop: str) -> int | None:
    """The customer this browser is logged in as on ``shop``, if any."""
    value = (session.get(SESSION_KEY) or {}).get(shop)
    return int(value) if value is not None else None


def log_in(shop: str, customer_id: Any) -> Customer:
    """Log this browser in as one of the store's customers (the session cookie carries it)."""
    try:
        wanted = int(customer_id)
    except (TypeError, ValueError):
        raise InvalidInput("customer_id must be the id of one of the store's customers") from None
    with current_state().session() as db:
        checkout.get_store(db, shop)
        customer = db.scalar(select(Customer).where(Customer.shop == shop, Customer.id == wanted))
        if customer is None:
            raise NotFound(f"no customer {wanted} on {shop}")
        db.expunge(customer)
    session[SESSION_KEY] = {**(session.get(SESSION_KEY) or {}), shop: customer.id}
    return customer


def log_out(shop: str) -> None:
    logged_in = dict(session.get(SESSION_KEY) or {})
    logged_in.pop(shop, None)
    session[SESSION_KEY] = logged_in


@bp.app_context_processor
def _storefront_helpers() -> dict[str, Any]:
    """For the store page's storefront card: who is logged in, and where the app proxy lives."""
    return {"storefront_customer": logged_in_customer, "app_proxy_path": app_proxy_path}


def app_proxy_path(shop: str) -> str | None:
    config = current_state().config
    if not config.app_proxy_url:
        return None
    return url_for("storefront.proxied", shop=shop, prefix=config.app_proxy_prefix, subpath=config.app_proxy_subpath)


# --- pages -----------------------------------------------------------------------------------------

@bp.errorhandler(DevstoreError)
def _page_error(exc: DevstoreError):  # type: ignore[no-untyped-def]
    return render_template("error.html", message=str(exc), status=exc.status), exc.status


@bp.get("/stores/<shop>/account/login")
def login_page(shop: str):  # type: ignore[no-untyped-def]
    with current_state().session() as db:
        store = checkout.get_store(db, shop)
        customers = db.scalars(select(Customer).where(Customer.shop == shop).order_by(Customer.created_at)).all()
        names = [(c.id, c.email or f"customer {c.id}") for c in customers]
    return render_template("login.html", store=store, customers=names, current=logged_in_customer(shop),
                           return_url=pages.safe_path(request.args.get("return_url")) or "")


@bp.post("/stores/<shop>/account/login")
def login(shop: str):  # type: ignore[no-untyped-def]
    if request.form.get("customer_id"):
        log_in(shop, request.form["customer_id"])
    else:
        log_out(shop)  # "nobody": browse as a guest
    return redirect(pages.safe_path(request.form.get("return_url")) or url_for("pages.store", shop=shop), 303)


@bp.route("/stores/<shop>/account/logout", methods=["GET", "POST"])
def logout(shop: str):  # type: ignore[no-untyped-def]
    with current_state().session() as db:
        checkout.get_store(db, shop)
    log_out(shop)
    target = request.values.get("return_url")
    return redirect(pages.safe_path(target) or url_for("pages.store", shop=shop), 303)


# --- the proxy -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Storefront:
    """What the proxy needs from the store's state, read before the app is called (the lock is not held)."""

    shop: str
    name: str
    email: str
    currency: str
    customer: dict[str, Any] | None


# strict_slashes=False: ".../oncecode/" is served (and forwarded with its slash), not redirected.
@bp.route("/stores/<shop>/<any(apps, a, community, tools):prefix>/<subpath>",
          methods=["GET", "POST", "HEAD"], defaults={"rest": ""}, strict_slashes=False)
@bp.route("/stores/<shop>/<any(apps, a, community, tools):prefix>/<subpath>/<path:rest>",
          methods=["GET", "POST", "HEAD"])
def proxied(shop: str, prefix: str, subpath: str, rest: str):  # type: ignore[no-untyped-def]
    config = current_state().config
    storefront = _storefront(shop, prefix, subpath, config)
    base = f"/stores/{shop}/{prefix}/{subpath}"
    suffix = request.path[len(base):]  # "", "/", "/page", … as the visitor wrote it
    url = forward_url(config, suffix, request.query_string.decode("utf-8", "replace"), shop,
                      storefront.customer["id"] if storefront.customer else None, f"/{prefix}/{subpath}")
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    try:
        answer = requests.request(request.method, url, data=request.get_data() or None, headers=headers,
                                  timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        log.warning("app proxy: the app did not answer", extra={"shop": shop, "reason": type(exc).__name__})
        return render_template("error.html", status=502,
                               message=f"The app did not answer its proxy URL ({type(exc).__name__})."), 502
    kept = {name: answer.headers[name] for name in RETURNED_HEADERS if name in answer.headers}
    mime = answer.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if mime != "application/liquid":
        return Response(answer.content, status=answer.status_code, headers=kept)
    kept.pop("Content-Type")
    content = render_liquid(answer.text, storefront)
    return Response(render_template("storefront.html", storefront=storefront, content=content,
                                    path=request.path), status=answer.status_code, headers=kept)


def _storefront(shop: str, prefix: str, subpath: str, config: DevstoreConfig) -> Storefront:
    """The store and the logged-in customer, or NotFound where Shopify has no proxy at this path."""
    with current_state().session() as db:
        store = checkout.get_store(db, shop)
        if not config.app_proxy_url or (prefix, subpath) != (config.app_proxy_prefix, config.app_proxy_subpath):
            raise NotFound(f"no page /{prefix}/{subpath} on {shop} (the app proxy is "
                           f"/{config.app_proxy_prefix}/{config.app_proxy_subpath}"
                           f"{'' if config.app_proxy_url else ', and no proxy URL is configured'})")
        installation = db.scalar(select(Installation).where(Installation.shop == shop))
        if installation is None or not installation.installed:
            raise NotFound(f"no page /{prefix}/{subpath} on {shop}: the app is not installed")
        if "write_app_proxy" not in installation.scopes.split(","):
            raise NotFound(f"no page /{prefix}/{subpath} on {shop}: the app's grant lacks write_app_proxy, "
                           "which an app proxy requires")
        customer = None
        customer_id = logged_in_customer(shop)
        if customer_id is not None:
            row = db.scalar(select(Customer).where(Customer.shop == shop, Customer.id == customer_id))
            customer = None if row is None else {
                "id": row.id, "email": row.email, "first_name": row.first_name, "last_name": row.last_name,
                "name": " ".join(part for part in (row.first_name, row.last_name) if part) or row.email}
        return Storefront(shop=shop, name=store.name, email=store.email, currency=store.currency, customer=customer)


def shopify_parameters(shop: str, customer_id: int | None, path_prefix: str, now: float | None = None,
                       ) -> list[tuple[str, str]]:
    """The parameters Shopify appends to a proxied request, in its order, before the signature."""
    return [("shop", shop), ("logged_in_customer_id", "" if customer_id is None else str(customer_id)),
            ("path_prefix", path_prefix), ("timestamp", str(int(time.time() if now is None else now)))]


def forward_url(config: DevstoreConfig, suffix: str, visitor_query: str, shop: str, customer_id: int | None,
                path_prefix: str, now: float | None = None) -> str:
    """The app's URL for a storefront request: proxy URL + the path after the subpath + the visitor's
    query (as sent) + Shopify's parameters, signed over all of them, decoded."""
    added = shopify_parameters(shop, customer_id, path_prefix, now)
    signed = [*parse_qsl(visitor_query, keep_blank_values=True), *added]
    query = urlencode([*added, ("signature", proxy_signature(config.api_secret, signed))])
    return f"{(config.app_proxy_url or '').rstrip('/')}{suffix}?{'&'.join(p for p in (visitor_query, query) if p)}"


def render_liquid(source: str, storefront: Storefront) -> Markup:
    """The app's Liquid, rendered with a theme's global objects; a Liquid error is shown as Shopify shows it."""
    root = url_for("pages.store", shop=storefront.shop)
    context: Mapping[str, Any] = {
        "shop": {"name": storefront.name, "email": storefront.email, "currency": storefront.currency,
                 "domain": storefront.shop, "permanent_domain": storefront.shop},
        "customer": storefront.customer,
        "routes": {"root_url": root, "account_url": root,
                   "account_login_url": url_for("storefront.login_page", shop=storefront.shop),
                   "account_logout_url": url_for("storefront.logout", shop=storefront.shop)},
    }
    try:
        return Markup(liquid.Environment().from_string(source).render(**context))  # noqa: S704 - the app's page
    except liquid.exceptions.LiquidError as exc:
        return Markup("<p>Liquid error: {}</p>").format(str(exc).splitlines()[0])


# --- control API -----------------------------------------------------------------------------------

def _storefront_json(shop: str) -> dict[str, Any]:
    config = current_state().config
    return {"customer_id": logged_in_customer(shop),
            "app_proxy": {"path": app_proxy_path(shop), "url": config.app_proxy_url,
                          "prefix": config.app_proxy_prefix, "subpath": config.app_proxy_subpath}}


@control_bp.get("/stores/<shop>/storefront")
def storefront_state(shop: str):  # type: ignore[no-untyped-def]
    """Who this client is logged in as, and where the app proxy is."""
    with current_state().session() as db:
        checkout.get_store(db, shop)
    return jsonify(_storefront_json(shop))


@control_bp.post("/stores/<shop>/login")
def control_login(shop: str):  # type: ignore[no-untyped-def]
    """Log this client in as ``{"customer_id": n}`` (the answer's session cookie carries it)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "customer_id" not in body:
        raise InvalidInput('send {"customer_id": <id of one of the store\'s customers>}')
    log_in(shop, body["customer_id"])
    return jsonify(_storefront_json(shop))


@control_bp.post("/stores/<shop>/logout")
def control_logout(shop: str):  # type: ignore[no-untyped-def]
    with current_state().session() as db:
        checkout.get_store(db, shop)
    log_out(shop)
    return jsonify(_storefront_json(shop))
