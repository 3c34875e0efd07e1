"""``GET /proxy``: the customer's page, as Shopify's app proxy fetches it for the storefront.

``shopify.app.toml`` ``[app_proxy]`` sends ``https://{shop}/apps/oncecode`` here (merchants may move it
to another prefix or subpath; ``path_prefix`` says where). Every request is verified first
(``app.shopify.proxy``): nothing is read before the signature, the timestamp and the shop check out,
and the customer is the signed ``logged_in_customer_id``, never a cookie (Shopify forwards none).

The answer is ``application/liquid``: Shopify renders it inside the store's theme. Shopify also runs
any Liquid in it, so every value is written inert: HTML-escaped, and with ``{`` and ``}`` as character
references, so that a code or a program name such as ``{{ customer.email }}`` shows as typed instead of
running (Shopify's security check "App proxy Liquid injection"). The page's own markup has no Liquid.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, g, request
from jinja2 import Environment, PackageLoader
from markupsafe import Markup, escape

from app.codes import metrics
from app.codes.customer_codes import CustomerCode, open_codes
from app.errors import NotFound, OnceCodeError
from app.lifecycle import shop_by_domain
from app.shopify.proxy import ProxyRequest, verify_proxy_request
from app.shopify.storefront import discount_url
from app.web import db_session, rt

bp = Blueprint("proxy", __name__, url_prefix="/proxy")
log = logging.getLogger(__name__)

LIQUID = "application/liquid; charset=utf-8"


def liquid_inert(value: Any) -> Markup:
    """``value`` as text Liquid and HTML both leave alone: escaped, braces as ``&#123;``/``&#125;``."""
    return Markup(str(escape(value)).replace("{", "&#123;").replace("}", "&#125;"))  # noqa: S704


@functools.cache
def _templates() -> Environment:
    """The storefront page's templates: every ``{{ … }}`` goes through ``liquid_inert``, even ``|safe``."""
    return Environment(loader=PackageLoader("app", "templates"), autoescape=True, finalize=liquid_inert,
                       trim_blocks=True, lstrip_blocks=True)


@bp.before_request
def _verify() -> None:
    try:
        g.proxy = verify_proxy_request(request.args.items(multi=True), rt().settings.api_secrets)
    except OnceCodeError as exc:
        log.warning("app proxy request refused", extra={"status": exc.status, "reason": str(exc)})
        raise
    shop = shop_by_domain(db_session(), g.proxy.shop)
    if shop is None or not shop.is_installed:
        raise NotFound("OnceCode is not installed on this store")
    g.shop = shop


@bp.get("")
@bp.get("/")
def customer_page() -> Response:
    proxied: ProxyRequest = g.proxy
    shop = g.shop
    page: dict[str, Any] = {"logged_in": proxied.customer_id is not None,
                            "login_url": rt().settings.store_url(shop.domain) + "/account/login"}
    if proxied.customer_id is not None:
        session = db_session()
        zone = ZoneInfo(metrics.time_zone_of(shop))
        currency = metrics.shop_currency(session, shop.id)
        page["codes"] = [{"code": code, "offer": offer_text(code, currency),
                          "url": discount_url(rt().settings, shop.domain, code.code, code.redirect_path),
                          "expires_on": _local_date(code.expires_at, zone)}
                         for code in open_codes(session, shop.id, proxied.customer_id)]
    body = _templates().get_template("proxy_page.html").render(**page)
    return Response(body, content_type=LIQUID, headers={"Cache-Control": "private, no-store"})


def offer_text(code: CustomerCode, currency: str | None) -> str:
    """What the code takes off, in words: "15 % off", "5.00 EUR off on orders of 20.00 EUR or more"."""
    def money(amount: Decimal) -> str:
        return f"{amount:.2f} {currency}" if currency else f"{amount:.2f}"

    if code.value_type == "percentage":
        text = f"{code.value.normalize():f} % off"
    elif code.value_type == "fixed_amount":
        text = f"{money(code.value)} off"
    else:
        text = "Free shipping"
    if code.minimum_subtotal:
        text += f" on orders of {money(code.minimum_subtotal)} or more"
    return text


def _local_date(moment: datetime | None, zone: ZoneInfo) -> str | None:
    """The day ``moment`` falls on in the store's time zone, as ``YYYY-MM-DD``."""
    return None if moment is None else moment.astimezone(zone).date().isoformat()
