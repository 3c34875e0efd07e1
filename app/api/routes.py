"""JSON API for the merchant's admin pages. Every call needs an App Bridge session token, and every
query is scoped to the shop that token names."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app import lifecycle
from app.codes import programs
from app.errors import BadRequest, NotFound
from app.models import DataRequest
from app.web import db_session, session_token_shop

bp = Blueprint("api", __name__, url_prefix="/api")


def _shop():  # type: ignore[no-untyped-def]
    shop = lifecycle.shop_by_domain(db_session(), session_token_shop())
    if shop is None or not shop.is_installed:
        raise NotFound("this store has not installed OnceCode")
    return shop


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


@bp.get("/data-requests/<int:request_id>")
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


@bp.get("/programs/<int:program_id>")
def program_detail(program_id: int):  # type: ignore[no-untyped-def]
    shop = _shop()
    return jsonify(programs.program_json(programs.get_program(db_session(), shop.id, program_id)))


@bp.patch("/programs/<int:program_id>")
def program_update(program_id: int):  # type: ignore[no-untyped-def]
    """Change some fields of a program; the body is a JSON object of field → new value.

    All or nothing: any invalid field answers 400 naming every problem, and nothing changes.
    """
    shop = _shop()
    # force: a client that forgets the Content-Type still gets its JSON read, or a clear 400.
    changes = request.get_json(force=True, silent=True)
    if not isinstance(changes, dict):
        raise BadRequest('the body must be a JSON object of the fields to change, e.g. {"active": true}')
    session = db_session()
    program = programs.update_program(session, shop.id, program_id, changes)
    session.commit()
    return jsonify(programs.program_json(program))
