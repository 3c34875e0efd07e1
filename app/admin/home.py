"""The admin's home: the store's figures for a chosen range, the daily chart, each program's share,
the referral funnel, what needs attention — and, on a first run, the one step to a live welcome
program."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import request, url_for
from sqlalchemy import select

from app.admin import auth, charts
from app.admin.routes import bp, done, installed_shop, notice, render_page
from app.codes import attention, catch_up, metrics, programs
from app.errors import BadRequest
from app.models import IssuedCode, Program, ReconcileCursor, Shop
from app.web import db_session, rt

PRESETS = {"7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days", "365d": "Last 365 days",
           "month": "This month", "last-month": "Last month"}
DEFAULT_PRESET = "30d"
STARTED = notice("welcome-on", "Welcome codes are on: the next customer who signs up gets a code of their own.")


def preset_days(preset: str, today: date) -> tuple[date, date]:
    """The first and last day of a preset range, ``today`` being the store's today."""
    if preset == "month":
        return today.replace(day=1), today
    if preset == "last-month":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    return today - timedelta(days=int(preset.removesuffix("d")) - 1), today


def chosen_period(shop: Shop) -> tuple[metrics.Period, str | None, dict[str, str]]:
    """The range the page asks for (a preset, or ``from``/``to``), its preset, and problems by field."""
    zone = metrics.time_zone_of(shop)
    today = datetime.now(ZoneInfo(zone)).date()
    first, last = request.args.get("from", ""), request.args.get("to", "")
    if first or last:
        try:
            return metrics.Period.of_shop(shop, first or None, last or None), None, {}
        except BadRequest as exc:
            field = "to" if str(exc).startswith("to ") else "from"
            start, end = preset_days(DEFAULT_PRESET, today)
            return metrics.Period(start, end, zone), DEFAULT_PRESET, {field: str(exc)}
    preset = request.args.get("range", DEFAULT_PRESET)
    if preset not in PRESETS:
        preset = DEFAULT_PRESET
    start, end = preset_days(preset, today)
    return metrics.Period(start, end, zone), preset, {}


def attention_link(item: attention.Attention) -> str:
    """The admin page that deals with a problem, with its filters and Shopify's parameters."""
    return url_for(f"admin.{item.page}", **auth.carried(), **dict(item.query))


def first_run(shop: Shop) -> bool:
    """No program on and no code ever issued: the page leads to a live welcome program."""
    session = db_session()
    active = session.scalar(select(Program.id).where(Program.shop_id == shop.id, Program.active).limit(1))
    issued = session.scalar(select(IssuedCode.id).where(IssuedCode.shop_id == shop.id).limit(1))
    return active is None and issued is None


@bp.get("/")
def home():  # type: ignore[no-untyped-def]
    shop = installed_shop()
    return _home(shop)


def _home(shop: Shop, start_problems: dict[str, str] | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    session = db_session()
    period, preset, problems = chosen_period(shop)
    report = metrics.shop_metrics(session, shop.id, period, daily=True, cache=rt().redis, medians=False)
    welcome = session.scalar(select(Program).where(Program.shop_id == shop.id, Program.kind == "welcome"))
    page = render_page(
        "admin/home.html", shop, period=report, preset=preset, presets=PRESETS, problems=problems,
        totals=report["totals"], chart=charts.daily_bars(report["daily"]), programs=shop.programs,
        catch_up=catch_up.status_json(session.get(ReconcileCursor, shop.id)),
        attention=attention.attention(session, shop, report), first_run=first_run(shop), welcome=welcome,
        start_problems=start_problems or {}, start_values=request.form, attention_link=attention_link)
    return page, 400 if problems or start_problems else status


@bp.post("/start")
def start():  # type: ignore[no-untyped-def]
    """The first run's one step: the welcome program on, with the value and expiry the merchant chose."""
    shop = installed_shop()
    session = db_session()
    welcome = session.scalar(select(Program).where(Program.shop_id == shop.id, Program.kind == "welcome"))
    if welcome is None:
        raise BadRequest("your store's programs are still being created; reload the page in a moment")
    changes: dict[str, object] = {"active": True, "value_type": "percentage", "value": request.form.get("value", "")}
    days = request.form.get("expires_after_days", "").strip()
    if days:
        changes["expires_after_days"] = int(days) if days.isascii() and days.isdigit() else days
    try:
        programs.update_program(session, shop.id, welcome.id, changes)
    except BadRequest as exc:
        session.rollback()
        fields = {field: part for part in str(exc).split("; ") for field in ("value", "expires_after_days")
                  if part.startswith(field)}
        return _home(shop, start_problems=fields or {"value": str(exc)})
    session.commit()
    return done("admin.home", STARTED)
