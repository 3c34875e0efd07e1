"""The admin's pages. Each verifies its request (``auth.page_shop``), makes sure the shop is installed
(``install.ensure_installed``: a managed installation's first open), and renders what the domain
functions answer — the same functions the JSON API and the CLI call."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from flask import Blueprint, redirect, render_template, request
from werkzeug.wrappers import Response

from app.admin import auth
from app.admin.install import InstallBusy, MissingScopes, ensure_installed
from app.codes import customer_codes
from app.errors import BadRequest, Unauthorized
from app.models import Program, Shop
from app.shopify.oauth import TokenEndpointError
from app.shopify.verify import valid_shop_domain
from app.web import db_session, rt

bp = Blueprint("admin", __name__, url_prefix="/admin")
log = logging.getLogger(__name__)


@bp.errorhandler(auth.NeedsSessionToken)
def _needs_token(exc: auth.NeedsSessionToken) -> Response:
    return redirect(auth.session_token_page_url())


@bp.errorhandler(Unauthorized)
def _unauthorized(exc: Unauthorized):  # type: ignore[no-untyped-def]
    return render_template("admin/problem.html", title="This page could not be verified",
                           message="Open OnceCode from your Shopify admin (Apps → OnceCode): this page "
                                   "was opened with a token that is not valid for it."), 401


@bp.errorhandler(MissingScopes)
def _missing_scopes(exc: MissingScopes):  # type: ignore[no-untyped-def]
    return render_template("admin/scopes.html", missing=exc.missing, settings=rt().settings), 403


@bp.errorhandler(InstallBusy)
def _busy(exc: InstallBusy):  # type: ignore[no-untyped-def]
    return render_template("admin/problem.html", title="Setting up your store",
                           message="OnceCode is being set up for your store in another tab. Reload this page "
                                   "in a few seconds."), 503


@bp.errorhandler(TokenEndpointError)
def _exchange_failed(exc: TokenEndpointError):  # type: ignore[no-untyped-def]
    log.warning("token exchange failed", extra={"reason": str(exc)})
    if exc.transient:  # the store did not answer: worth a reload
        return render_template("admin/problem.html", title="OnceCode could not reach your store",
                               message="Your store did not answer just now. Reload the page in a moment."), 503
    return render_template("admin/problem.html", title="Your store refused OnceCode's access",
                           message="Your store did not give OnceCode access. Reinstall OnceCode from the Shopify "
                                   "App Store, then open it again."), 403


def installed_shop() -> Shop:
    """The verified, installed shop of this page (installing a managed installation on its first open)."""
    domain, token = auth.page_shop()
    shop_id = ensure_installed(rt(), domain, token)
    return db_session().get_one(Shop, shop_id)


@bp.app_template_filter("number")
def number(value: int | str | Decimal | None) -> str:
    """A count or an amount with thousands separators, as Shopify's admin writes them: 1,234 and
    20,673,813.07 (an amount keeps its decimals exactly: it is formatted as a ``Decimal``)."""
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{Decimal(str(value)):,}"


@bp.app_template_filter("offer")
def offer(program: Program | dict[str, Any]) -> str:
    """A program's offer in words ("15 % off", "5.00 off", "free shipping"), as the customer's own page
    writes it (``customer_codes.offer_text``): one wording everywhere. A program, or its JSON."""
    if isinstance(program, dict):
        value_type, value = program["value_type"], Decimal(str(program["value"]))
    else:
        value_type, value = program.value_type, program.value
    text = customer_codes.offer_text(value_type, value, None, None)
    return text[:1].upper() + text[1:]


# What an action's redirect may announce (``?notice=<key>``): fixed texts, never text from the URL.
NOTICES: dict[str, str] = {}


def notice(key: str, text: str) -> str:
    """Register a notice an action may end with (at import time); returns the key."""
    NOTICES[key] = text
    return key


def render_page(template: str, shop: Shop, **context: object) -> str:
    """A page of the admin: the shop, the settings, the Shopify parameters its links carry, and the
    notice an action's redirect named."""
    return render_template(template, shop=shop, settings=rt().settings, carried=auth.carried(),
                           notice=NOTICES.get(request.args.get("notice", "")), **context)


def done(endpoint: str, key: str, **params: object) -> Response:
    """After an action (POST): 303 to a page that says what was done (Post/Redirect/Get, so a reload
    does not send the form again). The page gets a fresh token through the session-token page."""
    from flask import url_for

    return redirect(url_for(endpoint, **auth.carried(), notice=key, **params), 303)


@bp.get("/session-token")
def session_token():  # type: ignore[no-untyped-def]
    """Loads App Bridge, which gets a fresh session token and reloads ``shopify-reload`` with it. No data
    here, so it may be framed by the store the query names (as ``shopifyapp``'s page is)."""
    shop = valid_shop_domain(request.args.get("shop", ""))
    target = request.args.get("shopify-reload", "")
    if shop is None:
        raise BadRequest("invalid or missing shop parameter: open OnceCode from your Shopify admin")
    if not target.startswith("/admin") or target.startswith("//") or "\\" in target:
        raise BadRequest("shopify-reload must be a page of OnceCode's admin, such as /admin/")
    from app.headers import allow_framing_by

    allow_framing_by(shop)
    return render_template("admin/session_token.html", settings=rt().settings)
