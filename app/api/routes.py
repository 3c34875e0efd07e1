"""JSON API for the merchant's admin pages. Every call needs an App Bridge session token, and every
query is scoped to the shop that token names."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app import lifecycle
from app.codes import catch_up, code_actions, health, issuance, metrics, programs
from app.errors import BadRequest, NotFound
from app.models import DataRequest
from app.params import (
    SHOPIFY_ID_MAX,
    idempotency_key,
    is_id,
    parse_id,
    parse_shopify_id,
    shown,
    storable_text,
    whole_number,
)
from app.web import db_session, rt, session_token_shop

bp = Blueprint("api", __name__, url_prefix="/api")


def _shop():  # type: ignore[no-untyped-def]
    shop = lifecycle.shop_by_domain(db_session(), session_token_shop())
    if shop is None or not shop.is_installed:
        raise NotFound("this store has not installed OnceCode")
    return shop


def _json_object(complaint: str) -> dict[str, Any]:
    """The request's body, a JSON object, or a 400 saying ``complaint``.

    Read whatever the Content-Type (a client that forgets it still gets its JSON read, or a clear
    400). Invalid JSON, UTF-8/16/32 that does not decode and numbers of more than 4,300 digits are
    "not a JSON object"; text PostgreSQL cannot store (NUL, a lone surrogate) is a 400 of its own;
    JSON nested too deeply for the parser is a ``RecursionError``, answered 400 by the app-wide
    handler (``app/__init__.py``).
    """
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise BadRequest(complaint)
    storable_text(body, "the body")
    return body


def _summary(request: DataRequest) -> dict[str, object]:
    return {"id": request.id, "shopify_request_id": request.shopify_request_id,
            "shopify_customer_id": request.shopify_customer_id, "received_at": request.created_at.isoformat()}


@bp.get("/data-requests")
def data_requests():  # type: ignore[no-untyped-def]
    """The customers/data_request exports waiting for the merchant, newest first."""
    shop = _shop()
    rows = db_session().scalars(select(DataRequest).where(DataRequest.shop_id == shop.id)
                                .order_by(DataRequest.created_at.desc())).all()
    return jsonify(data_requests=[_summary(r) for r in rows])


@bp.get("/data-requests/<id:request_id>")
def data_request(request_id: int):  # type: ignore[no-untyped-def]
    shop = _shop()
    row = db_session().scalar(select(DataRequest).where(DataRequest.shop_id == shop.id,
                                                        DataRequest.id == request_id))
    if row is None:
        raise NotFound(f"no data request {request_id} for this store")
    return jsonify(**_summary(row), data=row.data)


@bp.get("/programs")
def program_list():  # type: ignore[no-untyped-def]
    """The shop's programs (welcome, referral, manual), oldest first."""
    shop = _shop()
    return jsonify(programs=[programs.program_json(p) for p in programs.shop_programs(db_session(), shop.id)])


@bp.get("/programs/<id:program_id>")
def program_detail(program_id: int):  # type: ignore[no-untyped-def]
    shop = _shop()
    return jsonify(programs.program_json(programs.get_program(db_session(), shop.id, program_id)))


@bp.patch("/programs/<id:program_id>")
def program_update(program_id: int):  # type: ignore[no-untyped-def]
    """Change some fields of a program; the body is a JSON object of field → new value.

    All or nothing: any invalid field answers 400 naming every problem, and nothing changes.
    """
    shop = _shop()
    changes = _json_object('the body must be a JSON object of the fields to change, e.g. {"active": true}')
    session = db_session()
    program = programs.update_program(session, shop.id, program_id, changes)
    session.commit()
    return jsonify(programs.program_json(program))


# --- codes ----------------------------------------------------------------------------------------

CODE_FILTERS = issuance.CODE_FILTERS
CODE_STATUSES_HELP = ", ".join(CODE_FILTERS)
MAX_PAGE = 200
CUSTOMER_GID_RE = re.compile(r"gid://shopify/Customer/([0-9]+)")


def _int_arg(name: str, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    return whole_number(raw, name, low, high)


def _id_arg(name: str) -> int | None:
    raw = request.args.get(name)
    return None if raw is None or raw == "" else parse_id(raw, name)


def shopify_customer_id(value: object) -> int:
    """A customer's Shopify id, from a number or a ``gid://shopify/Customer/<id>``."""
    number = value
    if isinstance(value, str) and (match := CUSTOMER_GID_RE.fullmatch(value)):
        number = match.group(1)
    try:
        return parse_shopify_id(number, "customer_id")
    except BadRequest:
        raise BadRequest(f"customer_id must be a Shopify customer id (a number from 1 to {SHOPIFY_ID_MAX} or "
                         f"gid://shopify/Customer/<id>), not {shown(value)}") from None


def _code(shop, row) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return issuance.describe_code(db_session(), rt().settings, shop.id, shop.domain, row)


@bp.get("/codes")
def code_list():  # type: ignore[no-untyped-def]
    """The shop's codes, newest first. Filters: status (or ``open``: usable now), program_id,
    customer_id, code (codes starting with it, any case), from/to (issued on these days of the store,
    ``YYYY-MM-DD``, both included); pages: limit, before."""
    shop = _shop()
    status = request.args.get("status") or None
    if status is not None and status not in CODE_FILTERS:
        raise BadRequest(f"status must be one of {CODE_STATUSES_HELP}, not {shown(status)}")
    customer = request.args.get("customer_id")
    limit = _int_arg("limit", 1, MAX_PAGE) or 50
    where = issuance.code_filter(
        shop, status=status, program_id=_id_arg("program_id"),
        shopify_customer_id=shopify_customer_id(customer) if customer else None, code=request.args.get("code"),
        first=request.args.get("from") or None, last=request.args.get("to") or None)
    rows = issuance.list_codes(db_session(), shop.id, where=where, before=_id_arg("before"), limit=limit)
    codes = [issuance.code_json(row, rt().settings, shop.domain, shopify_id, program)
             for row, program, shopify_id in rows]
    return jsonify(codes=codes, next_before=codes[-1]["id"] if len(codes) == limit else None)


@bp.get("/codes/<id:code_id>")
def code_detail(code_id: int):  # type: ignore[no-untyped-def]
    shop = _shop()
    return jsonify(_code(shop, issuance.get_code(db_session(), shop.id, code_id)))


@bp.post("/codes")
def code_issue():  # type: ignore[no-untyped-def]
    """Issue a code of a program to a customer by hand: ``{"program_id": 1, "customer_id": 42}``.

    Answers 202 with the code, reserved and on its way to the store. An ``Idempotency-Key`` header
    (or ``idempotency_key`` in the body) makes a retried request answer 200 with the same code
    instead of issuing a second one.
    """
    shop = _shop()
    body = _json_object('the body must be a JSON object such as {"program_id": 1, "customer_id": 42}')
    unknown = sorted(set(body) - {"program_id", "customer_id", "idempotency_key"})
    if unknown:
        raise BadRequest(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                         "(give program_id, customer_id and optionally idempotency_key)")
    program_id = body.get("program_id")
    if not is_id(program_id):
        raise BadRequest(f"program_id must be the id of one of this store's programs, not {shown(program_id)}")
    customer = shopify_customer_id(body.get("customer_id"))
    key = idempotency_key(request.headers.get("Idempotency-Key") or body.get("idempotency_key"),
                          "the idempotency key")
    row, new = code_actions.issue(db_session(), rt().redis, shop.id, program_id, customer, key)
    response = jsonify(_code(shop, row))
    response.status_code = 202 if new else 200
    response.headers["Location"] = f"/api/codes/{row.id}"
    return response


@bp.post("/codes/<id:code_id>/revoke")
def code_revoke(code_id: int):  # type: ignore[no-untyped-def]
    """Revoke a code: it stops working on the store (a job deactivates it). 409 if redeemed or expired."""
    shop = _shop()
    row, done, _ = code_actions.revoke(db_session(), rt().redis, shop.id, code_id)
    response = jsonify(_code(shop, row))
    response.status_code = 200 if done else 202
    return response


@bp.post("/codes/<id:code_id>/retry")
def code_retry(code_id: int):  # type: ignore[no-untyped-def]
    """Issue a failed code again (after fixing what made it fail). 409 for a code that has not failed."""
    shop = _shop()
    row = code_actions.retry(db_session(), rt().redis, shop.id, code_id)
    response = jsonify(_code(shop, row))
    response.status_code = 202
    return response


# --- metrics and reconciliation -------------------------------------------------------------------

@bp.get("/metrics")
def metrics_report():  # type: ignore[no-untyped-def]
    """What the codes earned: ``from``/``to`` (the store's days, default the last 30), ``program_id``,
    ``daily=0`` to leave out the day-by-day series. See ``app.codes.metrics`` for the definitions."""
    shop = _shop()
    period = metrics.Period.of_shop(shop, request.args.get("from") or None, request.args.get("to") or None)
    daily = request.args.get("daily", "1")
    if daily not in ("0", "1"):
        raise BadRequest(f"daily must be 0 or 1, not {shown(daily)}")
    return jsonify(metrics.shop_metrics(db_session(), shop.id, period, program_id=_id_arg("program_id"),
                                        daily=daily == "1"))


def _reconcile_status(shop) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return health.catch_up_status(db_session(), rt().redis, shop.id)


@bp.get("/reconcile")
def reconcile_status():  # type: ignore[no-untyped-def]
    """How far catch-up reconciliation has read the store's orders, and what it is doing now."""
    return jsonify(_reconcile_status(_shop()))


@bp.post("/reconcile")
def reconcile_now():  # type: ignore[no-untyped-def]
    """Run catch-up now: 202 when queued, 200 when a run is already queued or running."""
    shop = _shop()
    queued = health.reconcile_now(db_session(), rt().redis, shop)
    response = jsonify(queued=queued, **_reconcile_status(shop))
    response.status_code = 202 if queued else 200
    response.headers["Location"] = "/api/reconcile"
    return response


@bp.patch("/reconcile")
def reconcile_settings():  # type: ignore[no-untyped-def]
    """Change how often catch-up runs: ``{"interval_minutes": 30}`` (1 to 1440)."""
    shop = _shop()
    body = _json_object('the body must be a JSON object such as {"interval_minutes": 30}')
    if set(body) != {"interval_minutes"}:
        raise BadRequest('the body must be a JSON object such as {"interval_minutes": 30}')
    session = db_session()
    catch_up.set_interval(session, shop, body["interval_minutes"])
    session.commit()
    return jsonify(_reconcile_status(shop))
