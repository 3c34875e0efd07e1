"""Referral settings and the referral list in the JSON API (on the API blueprint: session token, scoped
to its shop). Routes only; the rules live in ``app.codes.referral_settings`` and ``referral_list``.

| call | answer |
|---|---|
| ``GET /api/referrals/settings`` | every referral setting, one flat object |
| ``PATCH /api/referrals/settings`` ``{"hold_days": 7}`` | the settings after it; 400 naming every problem |
| ``GET /api/referrals?status=&link_id=&customer_id=&limit=&before=`` | referrals, newest first (keyset pages) |
| ``GET /api/referrals/<id>`` | one referral |

A store without its referral programs answers 404 saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import jsonify, request

from app.api.routes import MAX_PAGE, _id_arg, _int_arg, _json_object, _shop, bp
from app.codes import referral_list, referral_settings, referrals
from app.errors import BadRequest
from app.models import REFERRAL_STATUSES
from app.params import shown
from app.web import db_session


@bp.get("/referrals/settings")
def referral_settings_show():  # type: ignore[no-untyped-def]
    """Every referral setting (rewards, fraud controls, landing caps, pool), by name."""
    shop = _shop()
    return jsonify(referral_settings.settings_json(db_session(), shop.id))


@bp.patch("/referrals/settings")
def referral_settings_update():  # type: ignore[no-untyped-def]
    """Change some referral settings; the body is a JSON object of setting → new value, as GET shows them.

    All or nothing: any invalid setting answers 400 naming every problem, and nothing changes.
    """
    shop = _shop()
    changes = _json_object('the body must be a JSON object of the settings to change, e.g. {"hold_days": 7}')
    session = db_session()
    settings = referral_settings.update_settings(session, shop.id, changes)
    session.commit()
    return jsonify(settings)


@bp.get("/referrals")
def referral_list_show():  # type: ignore[no-untyped-def]
    """The shop's referrals, newest first. Filters: status (held, rewarded, voided, blocked), link_id,
    customer_id (the advocate's Shopify id); pages: limit (1 to 200, default 50), before (the
    ``next_before`` of the previous page). A 400 names every bad parameter at once."""
    shop = _shop()
    status = request.args.get("status") or None
    customer = request.args.get("customer_id") or None
    problems: list[str] = []

    def parsed(parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except BadRequest as exc:
            problems.append(str(exc))
            return None

    if status is not None and status not in REFERRAL_STATUSES:
        problems.append(f"status must be one of {', '.join(REFERRAL_STATUSES)}, not {shown(status)}")
    link_id = parsed(lambda: _id_arg("link_id"))
    before = parsed(lambda: _id_arg("before"))
    limit = parsed(lambda: _int_arg("limit", 1, MAX_PAGE)) or 50
    advocate = parsed(lambda: referrals.shopify_customer_id(customer)) if customer else None
    if problems:
        raise BadRequest("; ".join(problems))
    rows = referral_list.list_referrals(db_session(), shop.id, status=status, link_id=link_id, advocate=advocate,
                                        limit=limit, before_id=before)
    answer = [referral_list.referral_json(row) for row in rows]
    return jsonify(referrals=answer, next_before=answer[-1]["id"] if len(answer) == limit else None)


@bp.get("/referrals/<id:referral_id>")
def referral_detail(referral_id: int):  # type: ignore[no-untyped-def]
    shop = _shop()
    return jsonify(referral_list.referral_json(referral_list.get_referral(db_session(), shop.id, referral_id)))
