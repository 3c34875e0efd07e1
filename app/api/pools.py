"""The friend code pool in the JSON API (session token, scoped to its shop): status, settings, top-up;
the landing's caps and the blocks they recorded.

Routes on the API blueprint, kept in a module of their own; ``create_app`` imports it.
"""

from __future__ import annotations

from flask import jsonify, request

from app.api.routes import _json_object, _shop, bp
from app.codes import landing, pools, referral_actions
from app.models import Program
from app.params import parse_id
from app.web import db_session, rt


def _friend_program(shop_id: int) -> Program:
    return referral_actions.friend_program(db_session(), shop_id)


@bp.get("/referrals/pool")
def pool_status():  # type: ignore[no-untyped-def]
    """Codes available, handed out, expired, pending and failed; the current window; points spent; each pool."""
    shop = _shop()
    return jsonify(pools.pool_status(db_session(), shop.id, _friend_program(shop.id).id))


@bp.patch("/referrals/pool")
def pool_settings():  # type: ignore[no-untyped-def]
    """Change ``low_water``, ``size``, ``window_days``; 400 naming every problem, nothing changed then."""
    shop = _shop()
    program = _friend_program(shop.id)
    changes = _json_object("give the pool settings to change as a JSON object, e.g. {\"size\": 2000}")
    pools.set_pool_settings(db_session(), shop.id, program.id, changes)
    db_session().commit()
    return jsonify(pools.pool_status(db_session(), shop.id, program.id))


@bp.post("/referrals/pool/top-up")
def pool_top_up():  # type: ignore[no-untyped-def]
    """Queue a top-up now: 202 queued, or 200 when one is already queued or running."""
    shop = _shop()
    queued = referral_actions.top_up_pool(db_session(), rt().redis, shop.id)
    return jsonify(queued=queued), 202 if queued else 200


@bp.get("/referrals/caps")
def landing_caps():  # type: ignore[no-untyped-def]
    """The landing's caps (friend codes per link per day, per client address per hour; 0 = off) and the
    latest blocks they recorded (``?link_id=`` for one link's)."""
    shop = _shop()
    link_id = request.args.get("link_id")
    return jsonify(caps=landing.caps_json(_friend_program(shop.id)),
                   blocks=landing.blocks(db_session(), shop.id,
                                         link_id=parse_id(link_id, "link_id") if link_id is not None else None))


@bp.patch("/referrals/caps")
def landing_caps_settings():  # type: ignore[no-untyped-def]
    """Change ``per_link_per_day``, ``per_address_per_hour``; 400 naming every problem, nothing changed then."""
    shop = _shop()
    program = _friend_program(shop.id)
    changes = _json_object("give the caps to change as a JSON object, e.g. {\"per_link_per_day\": 50}")
    landing.set_caps(db_session(), program, changes)
    db_session().commit()
    return jsonify(caps=landing.caps_json(program), blocks=landing.blocks(db_session(), shop.id))
