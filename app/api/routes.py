"""JSON API for the merchant's admin pages. Every call needs an App Bridge session token, and every
query is scoped to the shop that token names."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import select

from app import lifecycle
from app.errors import NotFound
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
