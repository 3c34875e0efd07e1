"""``GET /r/{token}``: where a shared referral link lands.

An active link sends the visitor on to the store's home page (302) and counts the click; friend
codes come in a later issue. A retired or unknown link, or a store that no longer runs OnceCode,
gets a friendly page instead of an error, with a way on to the store whenever the store is known.
The request path makes one indexed query and one counter update, and never calls the Admin API:
it must answer in milliseconds whatever Shopify is doing. Limited per client address like every
public page (``app.ratelimit``).

Statuses: 404 for a token we never issued (nothing is there, and never was), 410 Gone for a
retired link (it existed and will not come back: crawlers and link checkers drop it), 200 for a
store that uninstalled OnceCode (the link itself is fine and works again after a reinstall).
"""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request

from app.codes import referrals
from app.shopify.storefront import home_url
from app.web import db_session, rt

bp = Blueprint("referrals", __name__)

STATUS = {"unknown": 404, "retired": 410, "store_closed": 200}


@bp.get("/r/<path:token>")
def landing(token: str) -> Response:
    session = db_session()
    # HEAD (link checkers, some previews) looks without counting.
    found = referrals.land(session, token, count_click=request.method == "GET")
    session.commit()
    store = home_url(rt().settings, found.shop_domain) if found.shop_domain else None
    if found.state == "active":
        response = redirect(store, 302)  # type: ignore[arg-type]
    else:
        response = Response(render_template("referral_inactive.html", state=found.state, store_url=store,
                                            shop=found.shop_domain), status=STATUS[found.state])
    # Every opening must reach us (to be counted, and later to hand out a code): nothing may cache it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"  # (Referrer-Policy: no-referrer is app-wide: app.headers)
    return response
