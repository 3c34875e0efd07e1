"""The Referrals pages: the referrals with their status and reasons in plain words
(``referral_list``), the advocates' links with their clicks and metafield (``referrals``: create one for
a customer, retire one — ``referral_actions``, as the API), and the friend codes' pool with the landing's
blocks (``pools.pool_status``, ``landing.blocks``; "top up now" as the API). Three tabs of one page;
the referral settings are edited on the Programs page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import request, url_for
from redis.exceptions import RedisError
from sqlalchemy import select

from app.admin import auth
from app.admin.routes import bp, done, installed_shop, notice, render_page
from app.codes import landing, pools, referral_actions, referral_list, referrals
from app.codes.metrics import time_zone_of
from app.errors import BadRequest, Conflict, NotFound
from app.models import LINK_STATUSES, REFERRAL_STATUSES, Program, Shop
from app.params import parse_id
from app.web import db_session, rt

PAGE = 50  # rows per page
BLOCKS_SHOWN = 20
STATUS_LABELS = {"held": "Held", "rewarded": "Rewarded", "voided": "Voided", "blocked": "Blocked"}
STATUS_BADGES = {"held": "info", "rewarded": "success", "voided": "", "blocked": "attention"}
LINK_LABELS = {"active": "Active", "retired": "Retired"}
METAFIELD_LABELS = {"pending": ("On its way to the customer", "info"), "written": ("On the customer", "success"),
                    "removed": ("Removed from the customer", ""), "failed": ("Refused by the store", "critical")}
BLOCK_LABELS = {"link_daily_cap": "The link reached its daily cap of friend codes",
                "address_hourly_cap": "One visitor's address reached its hourly cap of friend codes"}

LINK_CREATED = notice("link-created", "Link created. It reaches the customer's account in a moment.")
LINK_EXISTS = notice("link-exists", "This customer has an active link already: it is shown below.")
LINK_RETIRED = notice("link-retired", "Link retired. It now opens a \"no longer active\" page and leaves the "
                                      "customer's account in a moment.")
TOP_UP_QUEUED = notice("pool-top-up", "Top-up queued: new friend codes reach your store in a few minutes.")
TOP_UP_RUNNING = notice("pool-top-up-running", "A top-up is already queued or running: nothing more to do.")


def _clock(shop: Shop) -> Callable[[Any], str]:
    """A formatter for moments (datetimes or ISO text), in the store's time zone."""
    zone = ZoneInfo(time_zone_of(shop))

    def when(moment: Any) -> str:
        if not moment:
            return ""
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        return moment.astimezone(zone).strftime("%d %b %Y, %H:%M")
    return when


def _tabs() -> list[dict[str, Any]]:
    here = request.endpoint
    return [{"label": label, "url": url_for(endpoint, **auth.carried()), "current": here == endpoint}
            for endpoint, label in (("admin.referrals", "Referrals"), ("admin.referral_links", "Advocates' links"),
                                    ("admin.referral_pool", "Friend codes"))]


def _settings_url(shop: Shop) -> str:
    """Where the referral settings are edited: the referral reward program's page, at its settings
    (the Programs list when the store has no such program yet)."""
    reward = db_session().scalar(select(Program.id).where(Program.shop_id == shop.id,
                                                          Program.kind == "referral_reward"))
    if reward is None:
        return url_for("admin.programs", **auth.carried())
    return url_for("admin.program", program_id=reward, **auth.carried()) + "#referral-settings"


def _render(template: str, shop: Shop, **context: Any) -> str:
    return render_page(template, shop, tabs=_tabs(), settings_url=_settings_url(shop), when=_clock(shop), **context)


def _query_values(*names: str) -> dict[str, str]:
    return {name: request.args.get(name, "").strip() for name in names}


def _parsed(values: dict[str, str], errors: dict[str, str], name: str, parse: Callable[[str], Any]) -> Any:
    """``parse`` of a non-empty field, its ``BadRequest`` recorded as that field's error."""
    if not values.get(name):
        return None
    try:
        return parse(values[name])
    except BadRequest as exc:
        errors[name] = str(exc)
        return None


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise BadRequest(f"status must be one of {', '.join(allowed)}, not {value!r}")
        return value
    return check


def _page_url(endpoint: str, filtered: dict[str, str], before: int | None) -> str | None:
    return url_for(endpoint, **auth.carried(), **filtered, before=before) if before else None


# --- referrals -------------------------------------------------------------------------------------


@bp.get("/referrals", endpoint="referrals")  # the function's name would hide app.codes.referrals
def referrals_page():  # type: ignore[no-untyped-def]
    shop = installed_shop()
    session = db_session()
    values = _query_values("status", "customer_id", "before")
    errors: dict[str, str] = {}
    status = _parsed(values, errors, "status", _choice(REFERRAL_STATUSES))
    advocate = _parsed(values, errors, "customer_id", referrals.shopify_customer_id)
    before = _parsed(values, errors, "before", lambda text: parse_id(text, "before"))
    rows: list[referral_list.ReferralRow] = []
    if not errors:
        rows = referral_list.list_referrals(session, shop.id, status=status, advocate=advocate, limit=PAGE + 1,
                                            before_id=before)
    filtered = {name: values[name] for name in ("status", "customer_id") if values[name]}
    older = rows[PAGE - 1].referral.id if len(rows) > PAGE else None
    any_referral = bool(rows) or bool(filtered) or before is not None or bool(
        referral_list.list_referrals(session, shop.id, limit=1))
    page = _render("admin/referrals.html", shop, rows=[referral_list.referral_json(row) for row in rows[:PAGE]],
                   values=values, errors=errors, filtered=filtered, any_referral=any_referral,
                   program_on=referrals.program_on(session, shop.id), statuses=STATUS_LABELS, badges=STATUS_BADGES,
                   older=_page_url("admin.referrals", filtered, older),
                   newest=url_for("admin.referrals", **auth.carried(), **filtered) if before else None)
    return page, 400 if errors else 200


# --- advocates' links ------------------------------------------------------------------------------


def _links_page(shop: Shop, form: dict[str, str] | None = None, form_errors: dict[str, str] | None = None,
                status_code: int = 200):  # type: ignore[no-untyped-def]
    session = db_session()
    values = _query_values("status", "customer_id", "before")
    errors: dict[str, str] = {}
    status = _parsed(values, errors, "status", _choice(LINK_STATUSES))
    customer = _parsed(values, errors, "customer_id", referrals.shopify_customer_id)
    before = _parsed(values, errors, "before", lambda text: parse_id(text, "before"))
    found: list[tuple[Any, int | None]] = []
    if not errors:
        found = referrals.list_links(session, shop.id, status=status, shopify_customer_id=customer, before=before,
                                     limit=PAGE + 1)
    filtered = {name: values[name] for name in ("status", "customer_id") if values[name]}
    older = found[PAGE - 1][0].id if len(found) > PAGE else None
    links = [referrals.link_json(link, rt().settings, shopify_id) for link, shopify_id in found[:PAGE]]
    any_link = bool(links) or bool(filtered) or before is not None or bool(referrals.list_links(session, shop.id,
                                                                                                 limit=1))
    page = _render("admin/referrals_links.html", shop, links=links, values=values, errors=errors, filtered=filtered,
                   any_link=any_link, program_on=referrals.program_on(session, shop.id), statuses=LINK_LABELS,
                   metafields=METAFIELD_LABELS, form=form or {}, form_errors=form_errors or {},
                   older=_page_url("admin.referral_links", filtered, older),
                   newest=url_for("admin.referral_links", **auth.carried(), **filtered) if before else None)
    return page, 400 if errors else status_code


@bp.get("/referrals/links")
def referral_links():  # type: ignore[no-untyped-def]
    return _links_page(installed_shop())


@bp.post("/referrals/links")
def referral_link_create():  # type: ignore[no-untyped-def]
    """A link for a customer by their Shopify id: made now, or the active one they have (never two)."""
    shop = installed_shop()
    form = {"customer_id": request.form.get("customer_id", "").strip()}
    try:
        customer = referrals.shopify_customer_id(form["customer_id"], "customer_id")
    except BadRequest as exc:
        return _links_page(shop, form, {"customer_id": str(exc)}, 400)
    link, new = referral_actions.create_link(db_session(), rt().redis, shop.id, customer)
    return done("admin.referral_links", LINK_CREATED if new else LINK_EXISTS, customer_id=str(customer))


@bp.post("/referrals/links/<id:link_id>/retire")
def referral_link_retire(link_id: int):  # type: ignore[no-untyped-def]
    """Retire a link (confirmed in place on the page). Retiring twice changes nothing."""
    shop = installed_shop()
    try:
        referral_actions.retire_link(db_session(), rt().redis, shop.id, link_id)
    except NotFound:
        return _render("admin/referrals_missing.html", shop, what="link"), 404
    return done("admin.referral_links", LINK_RETIRED)


# --- friend codes: the pool and the landing's blocks -----------------------------------------------


def _pool_page(shop: Shop, error: str | None = None, status_code: int = 200):  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        program = referral_actions.friend_program(session, shop.id)
    except NotFound:
        program = None
    status = pools.pool_status(session, shop.id, program.id) if program is not None else None
    errors = [pool for pool in (status or {}).get("pools", []) if pool["error"]]
    return _render("admin/referrals_pool.html", shop, program=program, pool=status,
                   last_error=errors[-1] if errors else None, error=error,
                   caps=landing.caps_json(program) if program is not None else None,
                   blocks=landing.blocks(session, shop.id, limit=BLOCKS_SHOWN), block_labels=BLOCK_LABELS,
                   program_on=referrals.program_on(session, shop.id)), status_code


@bp.get("/referrals/pool")
def referral_pool():  # type: ignore[no-untyped-def]
    return _pool_page(installed_shop())


@bp.post("/referrals/pool/top-up")
def referral_pool_top_up():  # type: ignore[no-untyped-def]
    """Queue the pool's top-up now (once: a second click finds it queued)."""
    shop = installed_shop()
    try:
        queued = referral_actions.top_up_pool(db_session(), rt().redis, shop.id)
    except (Conflict, NotFound) as exc:
        return _pool_page(shop, str(exc), exc.status)
    except RedisError:
        return _pool_page(shop, "The job queue is unavailable just now; try again in a moment.", 503)
    return done("admin.referral_pool", TOP_UP_QUEUED if queued else TOP_UP_RUNNING)
