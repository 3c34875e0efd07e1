"""OAuth install (authorization-code grant, expiring offline token) and the app's launch URL.

``/`` is where Shopify sends a merchant who opens or installs the app: inside the admin (an ``id_token``
in the query) it goes on to the embedded pages (``app.admin``), which verify the token and install a
managed installation; otherwise the launch's HMAC is checked here. ``/auth`` starts the grant;
``/auth/callback`` finishes it. Every failed check answers 400 or 403 and stores nothing.
"""

from __future__ import annotations

import logging
import secrets

from flask import Blueprint, redirect, render_template, request, session, url_for

from app import lifecycle
from app.codes import catch_up, metrics
from app.errors import BadRequest, Forbidden
from app.headers import remember_verified_shop
from app.models import ReconcileCursor
from app.queues import enqueue_setup
from app.shopify import oauth
from app.shopify.verify import fresh_timestamp, valid_shop_domain, verify_query_hmac
from app.web import db_session, rt

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

SHOP_HINT = "expected the store's myshopify domain, e.g. demo.myshopify.com"


def _shop_param() -> str:
    # Validated as sent, never trimmed or otherwise repaired: anything but a bare domain is refused.
    shop = valid_shop_domain(request.args.get("shop", ""))
    if shop is None:
        raise BadRequest(f"invalid or missing shop parameter: {SHOP_HINT}")
    return shop


@bp.get("/")
def launch():  # type: ignore[no-untyped-def]
    """Shopify's app URL: verify the launch, install if needed, else show the shop's status."""
    if "shop" not in request.args:
        return render_template("welcome.html")
    if "id_token" in request.args:  # opened inside the admin: the embedded pages verify the token
        return redirect(url_for("admin.home", **request.args))
    shop_domain = _shop_param()
    settings = rt().settings
    if not verify_query_hmac(request.args, settings.api_secrets) or not fresh_timestamp(
            request.args.get("timestamp")):
        raise Forbidden("this link is not signed by Shopify or has expired; open the app from your Shopify admin")
    remember_verified_shop(shop_domain)  # the admin may frame what we answer (app/headers.py)
    shop = lifecycle.shop_by_domain(db_session(), shop_domain)
    if shop is None or not shop.is_installed:
        target = url_for("auth.begin", shop=shop_domain)
        if request.args.get("embedded") == "1":
            # OAuth cannot run inside the admin's iframe: leave it first.
            return render_template("exit_iframe.html", target=target)
        return redirect(target)
    report = metrics.shop_metrics(db_session(), shop.id, metrics.Period.of_shop(shop, None, None), daily=False)
    catching_up = catch_up.status_json(db_session().get(ReconcileCursor, shop.id))
    return render_template("status.html", shop=shop, settings=settings, programs=shop.programs,
                           totals=report["totals"], period=report, catch_up=catching_up)


@bp.get("/auth")
def begin():  # type: ignore[no-untyped-def]
    shop = _shop_param()
    state = secrets.token_urlsafe(32)
    session.permanent = True
    session["oauth"] = {"state": state, "shop": shop}
    return redirect(oauth.authorize_url(rt().settings, shop, state))


@bp.get("/auth/callback")
def callback():  # type: ignore[no-untyped-def]
    settings = rt().settings
    params = request.args
    missing = [name for name in ("code", "hmac", "shop", "state", "timestamp") if not params.get(name)]
    if missing:
        raise BadRequest(f"OAuth callback is missing {', '.join(missing)}; start the install again")
    shop = _shop_param()
    expected = session.pop("oauth", None) or {}
    # Bytes: compare_digest raises TypeError on a str with non-ASCII characters (a 500, not a 403).
    if not expected.get("state") or not secrets.compare_digest(str(expected["state"]).encode(),
                                                               params["state"].encode()):
        raise Forbidden("OAuth state does not match this browser; start the install again from your admin")
    if expected.get("shop") != shop:
        raise Forbidden("OAuth callback is for a different shop than the one that started the install")
    if not verify_query_hmac(params, settings.api_secrets):
        raise Forbidden("OAuth callback signature (hmac) is invalid")
    if not fresh_timestamp(params["timestamp"]):
        raise Forbidden("OAuth callback has expired (timestamp too old or in the future); start again")
    remember_verified_shop(shop)  # the admin may frame what we answer (app/headers.py)

    grant = oauth.exchange_code(settings, shop, params["code"])
    lacking = oauth.missing_scopes(settings.shopify_scopes, grant.scopes)
    if lacking:
        raise Forbidden(f"the store granted fewer scopes than OnceCode needs (missing {', '.join(lacking)})")

    db = db_session()
    record = lifecycle.install(db, shop, grant, settings.shopify_api_version, rt().cipher)
    db.commit()
    log.info("shop installed", extra={"shop": shop})
    enqueue_setup(rt().redis, record.id, record.installed_at)
    return render_template("installed.html", shop=record, settings=settings)
