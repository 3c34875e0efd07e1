"""``GET /proxy``: the customer's page, as Shopify's app proxy fetches it for the storefront.

``shopify.app.toml`` ``[app_proxy]`` sends ``https://{shop}/apps/oncecode`` here (merchants may move it
to another prefix or subpath; ``path_prefix`` says where). Every request is verified first
(``app.shopify.proxy``): nothing is read before the signature, the timestamp and the shop check out,
and the customer is the signed ``logged_in_customer_id``, never a cookie (Shopify forwards none).

The answer is ``application/liquid``: Shopify renders it inside the store's theme. Shopify also runs
any Liquid in it, so every value is written inert: HTML-escaped, and with ``{`` and ``}`` as character
references, so that a code or a program name such as ``{{ customer.email }}`` shows as typed instead of
running (Shopify's security check "App proxy Liquid injection"). The page's own markup has no Liquid.

A logged-in customer sees their open codes, and, while the referral program is on, their referral link
(a read-only field, a Copy button from ``copy.js``, share links), the offer in one sentence, and their
referrals (``app.codes.customer_referrals``). A customer who never had a link gets one on this visit;
its metafield job is queued after the commit.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, g, request
from jinja2 import Environment, PackageLoader
from markupsafe import Markup, escape

from app.codes import customer_referrals, metrics
from app.codes.customer_codes import offer_text, open_codes
from app.codes.referrals import link_url
from app.errors import NotFound, OnceCodeError
from app.lifecycle import shop_by_domain
from app.queues import enqueue_referral_link
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
    settings = rt().settings
    store = settings.store_url(shop.domain)
    page: dict[str, Any] = {"logged_in": proxied.customer_id is not None, "login_url": store + "/account/login"}
    if proxied.customer_id is not None:
        session = db_session()
        zone = ZoneInfo(metrics.time_zone_of(shop))
        currency = metrics.shop_currency(session, shop.id)
        page["codes"] = [{"code": code, "kind": CODE_KINDS.get(code.kind),
                          "offer": _capitalised(offer_text(code.value_type, code.value, code.minimum_subtotal,
                                                           currency)),
                          "url": discount_url(settings, shop.domain, code.code, code.redirect_path),
                          "expires_on": _local_date(code.expires_at, zone)}
                         for code in open_codes(session, shop.id, proxied.customer_id)]
        # A HEAD (a link checker, a prefetch) looks without making a link.
        mine = customer_referrals.page_link(session, shop.id, proxied.customer_id, make=request.method == "GET")
        link = (mine.link.id, mine.link.token, mine.link.status) if mine.link is not None else None
        session.commit()
        if mine.new and link is not None:  # after the commit: the job reads the link's row
            enqueue_referral_link(rt().redis, shop.id, link[0], link[2])
        offer = customer_referrals.referral_offer(session, shop.id)
        if link is not None and offer is not None:
            url = link_url(settings, link[1])
            page["referral"] = {"url": url, "offer": offer_sentence(offer, currency),
                                "share": share_links(url, offer, currency),
                                "script": _script_path(store, proxied.path_prefix)}
        page["program_on"] = offer is not None
        page["referrals"] = [_referral(item, zone)
                             for item in customer_referrals.referrals_of(session, shop.id, proxied.customer_id)]
    body = _templates().get_template("proxy_page.html").render(**page)
    return Response(body, content_type=LIQUID, headers={"Cache-Control": "private, no-store"})


@bp.get("/copy.js")
def copy_script() -> Response:
    """The referral link's Copy button: served through the proxy, so that the store loads it from its own
    origin (a theme's ``script-src 'self'`` allows it), and verified like every proxy request (one rule
    for the whole blueprint; the script holds nothing secret, but no path here answers unsigned)."""
    return Response(_copy_script(), content_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=3600"})


@functools.cache
def _copy_script() -> bytes:
    return (Path(__file__).parent / "copy.js").read_bytes()


# What a code of each program kind is, after its offer (a manual code shows its program's name only).
CODE_KINDS = {"welcome": "your welcome gift", "referral_reward": "your reward for referring a friend",
              "referral_friend": "your friend code"}
PATH_PREFIX_RE = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def _script_path(store: str, path_prefix: str) -> str | None:
    """Where the store serves ``/copy.js`` on the shopper's own origin: the store's path (empty on Shopify,
    ``/stores/{shop}`` on devstore) + the proxy's ``path_prefix``. None for a prefix that is no plain path."""
    if not PATH_PREFIX_RE.fullmatch(path_prefix):
        return None
    return f"{urlsplit(store).path.rstrip('/')}{path_prefix}/copy.js"


def offer_sentence(offer: customer_referrals.ReferralOffer, currency: str | None) -> str:
    """The program in one sentence: what a friend gets, and what the customer gets per referred order."""
    reward = offer.reward
    mine = offer_text(reward.value_type, reward.value, reward.minimum_subtotal, currency)
    if offer.friend is None:
        return f"You get {mine} for each friend’s order placed with a code from your link."
    friend = offer.friend
    theirs = offer_text(friend.value_type, friend.value, friend.minimum_subtotal, currency)
    return (f"Friends who open your link get {theirs}, and you get {mine} for each friend’s order "
            "that goes through.")


def share_links(url: str, offer: customer_referrals.ReferralOffer, currency: str | None) -> dict[str, str]:
    """Plain links that open a message with the referral link: email, WhatsApp, X (web intent). No
    third-party script is loaded: each is a link the shopper follows."""
    if offer.friend is not None:
        friend = offer.friend
        pitch = f"Here is {offer_text(friend.value_type, friend.value, friend.minimum_subtotal, currency)} for you"
    else:
        pitch = "Have a look at this shop"
    return {
        "email": "mailto:?" + urlencode({"subject": "A gift for you", "body": f"{pitch}: {url}"}, quote_via=quote),
        "whatsapp": "https://wa.me/?" + urlencode({"text": f"{pitch}: {url}"}, quote_via=quote),
        "x": "https://x.com/intent/tweet?" + urlencode({"text": pitch, "url": url}, quote_via=quote),
    }


def _referral(item: customer_referrals.CustomerReferral, zone: ZoneInfo) -> dict[str, Any]:
    return {"ordered_on": _local_date(item.ordered_at, zone), "state": item.state,
            "reward_due": _local_date(item.reward_due, zone), "reward_code": item.reward_code,
            "reward_coming": item.reward_coming, "why_not": item.why_not}


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _local_date(moment: datetime | None, zone: ZoneInfo) -> str | None:
    """The day ``moment`` falls on in the store's time zone, as ``YYYY-MM-DD``."""
    return None if moment is None else moment.astimezone(zone).date().isoformat()
