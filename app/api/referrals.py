"""Referral links in the JSON API (on the API blueprint: session token, scoped to its shop).

| call | answer |
|---|---|
| ``GET /api/referral-links?status=&customer_id=&limit=&before=`` | links, newest first (keyset pages) |
| ``GET /api/referral-links/<id>`` | one link |
| ``POST /api/referral-links`` ``{"customer_id": 42}`` | 201 with a new link, 200 with the customer's active one |
| ``POST /api/referral-links/<id>/retire`` | 200 with the retired link (retiring twice changes nothing) |
"""

from __future__ import annotations

from flask import Response, jsonify, request

from app.api.routes import MAX_PAGE, _id_arg, _int_arg, _json_object, _shop, bp
from app.codes import referral_actions, referrals
from app.errors import BadRequest
from app.models import LINK_STATUSES
from app.params import shown
from app.web import db_session, rt


def _shown(link, shopify_id: int | None) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return referrals.link_json(link, rt().settings, shopify_id)


@bp.get("/referral-links")
def referral_link_list():  # type: ignore[no-untyped-def]
    """The shop's referral links, newest first. Filters: status (active, retired), customer_id; pages:
    limit (1 to 200, default 50), before (the ``next_before`` of the previous page)."""
    shop = _shop()
    status = request.args.get("status") or None
    if status is not None and status not in LINK_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(LINK_STATUSES)}, not {shown(status)}")
    customer = request.args.get("customer_id")
    limit = _int_arg("limit", 1, MAX_PAGE) or 50
    rows = referrals.list_links(
        db_session(), shop.id, status=status, before=_id_arg("before"), limit=limit,
        shopify_customer_id=referrals.shopify_customer_id(customer) if customer else None)
    links = [_shown(link, shopify_id) for link, shopify_id in rows]
    return jsonify(referral_links=links, next_before=links[-1]["id"] if len(links) == limit else None)


@bp.get("/referral-links/<id:link_id>")
def referral_link_detail(link_id: int):  # type: ignore[no-untyped-def]
    shop = _shop()
    session = db_session()
    link = referrals.get_link(session, shop.id, link_id)
    return jsonify(_shown(link, referrals.customer_shopify_id(session, link)))


@bp.post("/referral-links")
def referral_link_create() -> Response:
    """The customer's referral link: ``{"customer_id": 42}`` (or ``"gid://shopify/Customer/42"``).

    201 with a new link (its metafield job queued), 200 with the active link the customer has: asking
    twice never makes two.
    """
    shop = _shop()
    body = _json_object('the body must be a JSON object such as {"customer_id": 42}')
    unknown = sorted(set(body) - {"customer_id"})
    if unknown:
        raise BadRequest(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (give customer_id)")
    if "customer_id" not in body:
        raise BadRequest("customer_id is required: the Shopify id of the customer the link is for")
    customer = referrals.shopify_customer_id(body["customer_id"])
    link, new = referral_actions.create_link(db_session(), rt().redis, shop.id, customer)
    response = jsonify(_shown(link, customer))
    response.status_code = 201 if new else 200
    response.headers["Location"] = f"/api/referral-links/{link.id}"
    return response


@bp.post("/referral-links/<id:link_id>/retire")
def referral_link_retire(link_id: int):  # type: ignore[no-untyped-def]
    """Retire a link: it lands on "no longer active" and leaves the customer's metafield. Idempotent."""
    shop = _shop()
    session = db_session()
    link, _ = referral_actions.retire_link(session, rt().redis, shop.id, link_id)
    return jsonify(_shown(link, referrals.customer_shopify_id(session, link)))

