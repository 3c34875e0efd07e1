"""``GET /r/{token}``: where a shared referral link lands (``app.codes.landing`` decides).

An active link of a store whose referral program is on hands the visitor a friend code and sends them
302 to the store's discount link (``{store}/discount/{CODE}?redirect={path}``), so the code sits in
their cart. The browser keeps a random visitor key in a signed cookie (HttpOnly, SameSite=Lax, Secure
in production, path ``/r/``); the code is recorded against that key, so the same browser gets the same
code again; once that code was used on an order, the browser gets an "already used" page instead of a
new code. Anything else gets a friendly page with a way on to the store whenever the store is known.
The request path makes a few indexed queries and never calls the Admin API.

Statuses: 404 for a token we never issued, 410 Gone for a retired link (crawlers and link checkers
drop it), 200 for everything that may change by itself (store uninstalled, program off, pool empty, a
cap reached). Limited per client address like every public page (``app.ratelimit``), and new friend
codes have their own hourly budget per address (the program's cap).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, redirect, render_template, request
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.exc import SQLAlchemyError

from app.codes import landing, referrals
from app.ratelimit import hit_address_budget
from app.shopify.storefront import discount_url, home_url
from app.web import db_session, rt

log = logging.getLogger(__name__)
bp = Blueprint("referrals", __name__)

STATUS = {"unknown": 404, "retired": 410, "store_closed": 200, "program_off": 200, "pool_empty": 200,
          "capped": 200, "redeemed": 200}
COOKIE = "oncecode_friend"
COOKIE_SALT = "oncecode.friend-visitor"
COOKIE_MAX_AGE = 400 * 24 * 3600  # browsers cap a cookie's life at 400 days


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(rt().settings.secret_key, salt=COOKIE_SALT)


def _visitor_key() -> str | None:
    """The browser's visitor key from its cookie; a missing, forged or garbled cookie counts as none."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    try:
        key = _serializer().loads(value)
    except BadSignature:
        return None
    return key if isinstance(key, str) and 0 < len(key) <= 64 else None


def _address_allows(shop_id: int, per_hour: int) -> bool:
    return hit_address_budget(per_hour, "friend-codes", str(shop_id))


def _count(click: referrals.Click) -> None:
    """Count the click once the landing has committed; a database hiccup here costs a click, never the
    visitor's code or page."""
    try:
        referrals.record_click(rt().db, click)
    except SQLAlchemyError as exc:
        log.warning("referral click not counted", extra={"reason": type(exc).__name__})


@bp.get("/r/<path:token>")
def landing_page(token: str) -> Response:
    settings = rt().settings
    session = db_session()
    counting = request.method == "GET"  # HEAD (link checkers, some previews) looks without counting or taking
    had = _visitor_key()
    if counting:
        found = landing.land_friend(session, token, had, address_allows=_address_allows)
    else:
        found = landing.peek(session, token)
    session.commit()
    if found.click is not None:
        _count(found.click)
    store = home_url(settings, found.shop_domain) if found.shop_domain else None
    if found.state == "code" and found.code and found.shop_domain:
        response = redirect(discount_url(settings, found.shop_domain, found.code, found.redirect_path), 302)
    elif found.state == "active":  # a HEAD on a working link: where a visitor would end up, without a code
        response = redirect(store, 302)  # type: ignore[arg-type]
    elif found.state == "redeemed":
        response = Response(render_template("referral_redeemed.html", store_url=store, shop=found.shop_domain),
                            status=STATUS[found.state])
    else:
        response = Response(render_template("referral_inactive.html", state=found.state, store_url=store,
                                            shop=found.shop_domain), status=STATUS[found.state])
    if found.visitor_key and found.visitor_key != had:
        response.set_cookie(COOKIE, _serializer().dumps(found.visitor_key), max_age=COOKIE_MAX_AGE, path="/r/",
                            secure=settings.is_production, httponly=True, samesite="Lax")
    # Every opening must reach us (to be counted and to hand out the code): nothing may cache it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"  # (Referrer-Policy: no-referrer is app-wide: app.headers)
    return response
