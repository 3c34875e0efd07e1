"""The Codes page: the shop's codes, searched and filtered (``issuance.code_filter``, the API's filters),
newest first in keyset pages; a code's detail with its timeline, order and terms; revoke and retry
(``code_actions``, as the API); a code issued by hand; and the list as a CSV file, streamed from a
server-side cursor (``issuance.export_rows``) so that a million codes leave with flat memory."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, request, stream_with_context, url_for

from app.admin import auth
from app.admin.routes import bp, done, installed_shop, notice, render_page
from app.codes import code_actions, issuance
from app.codes.metrics import time_zone_of
from app.codes.programs import get_program
from app.codes.referrals import shopify_customer_id
from app.errors import BadRequest, Conflict, NotFound
from app.models import Program, Shop
from app.params import parse_id
from app.web import db_session, rt

PAGE = 50  # codes per page
FILTERS = ("code", "customer_id", "program_id", "status", "from", "to")
STATUS_LABELS = {"open": "Open (usable now)", "reserved": "Reserved", "created": "Created",
                 "attached": "Attached", "redeemed": "Redeemed", "expired": "Expired", "revoked": "Revoked",
                 "failed": "Failed"}
STATUS_BADGES = {"attached": "success", "created": "info", "reserved": "info", "redeemed": "success",
                 "failed": "critical", "revoked": "attention", "expired": ""}
CSV_COLUMNS = ("code", "program", "status", "customer_id", "issued_at", "expires_at", "redeemed_at", "order_name",
               "order_total", "discount", "currency")
INJECTION_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula

REVOKED = notice("code-revoked", "Code revoked. It stops working on your store in a moment.")
RETRIED = notice("code-retried", "The code is on its way to your store again.")
ISSUED = notice("code-issued", "Code issued. It reaches your store and the customer in a moment.")
ISSUED_BEFORE = notice("code-issued-before", "This code was issued already by the same form: nothing new was issued.")


def _program_choices(shop: Shop) -> list[Program]:
    return sorted(shop.programs, key=lambda program: program.id)


def _filters(shop: Shop) -> tuple[issuance.CodeFilter | None, dict[str, str], dict[str, str]]:
    """The list's filters from the query: (the filter, the values as typed, errors by field)."""
    values = {name: request.args.get(name, "").strip() for name in FILTERS}
    errors: dict[str, str] = {}
    session = db_session()

    def parsed(name: str, parse: Any) -> Any:
        if not values[name]:
            return None
        try:
            return parse(values[name])
        except (BadRequest, NotFound) as exc:
            errors[name] = str(exc)
            return None

    customer = parsed("customer_id", lambda text: shopify_customer_id(text, "customer_id"))
    program = parsed("program_id", lambda text: get_program(session, shop.id, parse_id(text, "program_id")).id)
    status = parsed("status", lambda text: issuance.code_filter(shop, status=text).status)
    code = parsed("code", lambda text: issuance.code_filter(shop, code=text).code)
    parsed("from", lambda text: issuance.code_filter(shop, first=text))
    # "to" is checked with "from" when that one is valid: a range backwards is the "to" field's error.
    parsed("to", lambda text: issuance.code_filter(shop, first=None if "from" in errors else values["from"] or None,
                                                   last=text))
    if errors:
        return None, values, errors
    where = issuance.code_filter(shop, status=status, program_id=program, shopify_customer_id=customer,
                                 code=code, first=values["from"] or None, last=values["to"] or None)
    return where, values, errors


def _page_key(name: str) -> int | None:
    raw = request.args.get(name, "")
    return parse_id(raw, name) if raw else None


def _clock(shop: Shop) -> Any:
    """A formatter for moments, in the store's time zone."""
    zone = ZoneInfo(time_zone_of(shop))

    def when(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime("%d %b %Y, %H:%M") if moment else ""
    return when


@bp.get("/codes")
def codes():  # type: ignore[no-untyped-def]
    shop = installed_shop()
    where, values, errors = _filters(shop)
    before, after = _page_key("before"), _page_key("after")
    if before and after:
        raise BadRequest("give before or after, not both")
    rows: list[Any] = []
    newer = older = None
    if where is not None:
        rows = issuance.list_codes(db_session(), shop.id, where=where, before=before, after=after,
                                     limit=PAGE + 1, by_issue=True)
        more = len(rows) > PAGE
        if after is not None:
            rows = rows[-PAGE:] if more else rows  # newest first: the extra row is the newest one
            newer = rows[0][0].id if more else None
            older = rows[-1][0].id if rows else None
        else:
            rows = rows[:PAGE]
            older = rows[-1][0].id if more else None
            newer = rows[0][0].id if before is not None and rows else None
    filtered = {name: value for name, value in values.items() if value}
    any_code = bool(rows) or bool(filtered) or before is not None or after is not None or issuance.list_codes(
        db_session(), shop.id, limit=1, by_issue=True)
    kept = {**auth.carried(), **filtered}
    links = {"csv": url_for("admin.codes_csv", **kept),
             "newer": url_for("admin.codes", **kept, after=newer) if newer else None,
             "older": url_for("admin.codes", **kept, before=older) if older else None}
    page = render_page("admin/codes.html", shop, rows=rows, values=values, errors=errors, filtered=filtered,
                       links=links, any_code=any_code, programs=_program_choices(shop),
                       statuses=STATUS_LABELS, badges=STATUS_BADGES, when=_clock(shop))
    return page, 400 if errors else 200


@bp.get("/codes.csv")
def codes_csv():  # type: ignore[no-untyped-def]
    """The list's codes (its filters, every page) as a CSV file, streamed as it is read."""
    shop = installed_shop()
    where, _, errors = _filters(shop)
    if where is None:
        raise BadRequest("; ".join(f"{name}: {message}" for name, message in errors.items()))
    session = db_session()
    today = datetime.now(UTC).astimezone(ZoneInfo(time_zone_of(shop))).date().isoformat()
    handle = shop.domain.removesuffix(".myshopify.com")

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(CSV_COLUMNS)
        for count, row in enumerate(issuance.export_rows(session, shop.id, where), 1):
            out.writerow([_cell(value) for value in row])
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(lines()), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=oncecode-codes-{handle}-{today}.csv",
                             "Cache-Control": "no-store"})


def _cell(value: object) -> str:
    """A CSV cell: moments in UTC ISO 8601, amounts as written, and text that a spreadsheet would take
    for a formula (``=``, ``+``, ``-``, ``@``, a tab or a carriage return first) prefixed with ``'``."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, Decimal | int):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(INJECTION_STARTS) else text


def _detail(shop: Shop, code_id: int, status: int = 200, error: str | None = None):  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        row = issuance.get_code(session, shop.id, code_id)
    except NotFound:
        return render_page("admin/codes_missing.html", shop), 404
    code = issuance.describe_code(session, rt().settings, shop.id, shop.domain, row)
    return render_page("admin/codes_detail.html", shop, row=row, code=code, error=error,
                       timeline=issuance.timeline(row), badges=STATUS_BADGES, statuses=STATUS_LABELS,
                       when=_clock(shop)), status


@bp.get("/codes/<id:code_id>")
def code_detail(code_id: int):  # type: ignore[no-untyped-def]
    return _detail(installed_shop(), code_id)


@bp.post("/codes/<id:code_id>/revoke")
def code_revoke(code_id: int):  # type: ignore[no-untyped-def]
    shop = installed_shop()
    try:
        code_actions.revoke(db_session(), rt().redis, shop.id, code_id)
    except NotFound:
        return _detail(shop, code_id)
    except Conflict as exc:
        return _detail(shop, code_id, 409, str(exc))
    return done("admin.code_detail", REVOKED, code_id=code_id)


@bp.post("/codes/<id:code_id>/retry")
def code_retry(code_id: int):  # type: ignore[no-untyped-def]
    shop = installed_shop()
    try:
        code_actions.retry(db_session(), rt().redis, shop.id, code_id, again_ok=True)
    except NotFound:
        return _detail(shop, code_id)
    except Conflict as exc:
        return _detail(shop, code_id, 409, str(exc))
    return done("admin.code_detail", RETRIED, code_id=code_id)


def _issue_page(shop: Shop, values: dict[str, str], errors: dict[str, str], status: int = 200):  # type: ignore[no-untyped-def]
    return render_page("admin/codes_new.html", shop, values=values, errors=errors,
                       programs=_program_choices(shop)), status


@bp.get("/codes/new")
def code_new():  # type: ignore[no-untyped-def]
    shop = installed_shop()
    values = {"program_id": request.args.get("program_id", ""), "customer_id": request.args.get("customer_id", ""),
              "request_key": uuid.uuid4().hex}
    return _issue_page(shop, values, {})


@bp.post("/codes/new")
def code_issue():  # type: ignore[no-untyped-def]
    """Issue a code by hand. The form carries a key drawn when it was shown (``request_key``), which
    makes the API's idempotency key: the same form sent twice issues one code."""
    shop = installed_shop()
    values = {name: request.form.get(name, "").strip() for name in ("program_id", "customer_id", "request_key")}
    errors: dict[str, str] = {}
    session = db_session()
    program_id = customer = None
    try:
        program_id = get_program(session, shop.id, parse_id(values["program_id"], "program")).id
    except (BadRequest, NotFound):
        errors["program_id"] = "Choose one of your programs."
    try:
        customer = shopify_customer_id(values["customer_id"], "customer_id")
    except BadRequest as exc:
        errors["customer_id"] = str(exc)
    key = values["request_key"]
    if not (key.isascii() and key.isalnum() and 1 <= len(key) <= 100):
        key = values["request_key"] = uuid.uuid4().hex  # a form not shown by us: a fresh one
    if errors or program_id is None or customer is None:
        return _issue_page(shop, values, errors, 400)
    try:
        row, new = code_actions.issue(session, rt().redis, shop.id, program_id, customer, key)
    except issuance.IssuanceFailed as exc:
        session.rollback()
        errors["program_id"] = str(exc)
        return _issue_page(shop, values, errors, 409)
    return done("admin.code_detail", ISSUED if new else ISSUED_BEFORE, code_id=row.id)
