"""The referrals as the merchant reads them: one row per paid order that used a friend code.

``app.codes.rewards`` records and decides them (``Referral``: held, then rewarded or voided; or blocked at
once by a fraud control); this module only reads: a keyset-paged list, newest first, with filters, and
one JSON shape for the API and the CLI, each reason put in plain words. Nothing of the friend is shown
but what identifies the order (its id, name and amounts) and the code they used: the friend's Shopify
customer id on the row is for the fraud checks, not for the list.

Plain functions over a SQLAlchemy session; no Flask.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from app.errors import BadRequest, NotFound
from app.models import REFERRAL_STATUSES, Customer, IssuedCode, Referral
from app.params import shown

# Each reason (``REFERRAL_REASONS``) in the merchant's words: why this referral earns no reward.
REASONS = {
    "self_referral": "the friend's order was placed by the advocate themselves",
    "same_email": "the friend's order was placed with the advocate's email address",
    "not_first_order": "the friend had paid an order before, and only a friend's first order is rewarded",
    "advocate_monthly_cap": "the advocate had reached this month's cap on rewards",
    "no_advocate": "the link's customer had been erased at their request, so there was nobody to reward",
    "order_cancelled": "the order was cancelled during the hold",
    "order_refunded": "the order was refunded beyond the allowed share during the hold",
    "reward_program_off": "the referral reward program was off when the hold ended",
    "advocate_erased": "the advocate was erased at their request before the hold ended",
}
STATUSES = {
    "held": "waiting for the hold to end",
    "rewarded": "the advocate was given a reward code",
    "voided": "no reward: the order was cancelled or refunded, or the reward could not be given",
    "blocked": "no reward: a fraud control stopped it",
}


@dataclass(frozen=True)
class ReferralRow:
    """A referral with what the list shows beside it: the advocate's Shopify id and the reward code."""

    referral: Referral
    advocate_customer_id: int | None
    reward_code: str | None


def _query(shop_id: int) -> Any:
    return (select(Referral, Customer.shopify_customer_id, IssuedCode.code)
            .outerjoin(Customer, and_(Customer.id == Referral.advocate_id, Customer.shop_id == shop_id))
            .outerjoin(IssuedCode, and_(IssuedCode.id == Referral.reward_code_id, IssuedCode.shop_id == shop_id))
            .where(Referral.shop_id == shop_id))


def list_referrals(session: Session, shop_id: int, *, status: str | None = None, link_id: int | None = None,
                   advocate: int | None = None, limit: int = 50, before_id: int | None = None) -> list[ReferralRow]:
    """The shop's referrals, newest first, ``limit`` at a time (keyset: ``before_id`` is the last id of
    the page before). Filters: ``status`` (``REFERRAL_STATUSES``), ``link_id``, ``advocate`` (the
    advocate's Shopify customer id)."""
    if status is not None and status not in REFERRAL_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(REFERRAL_STATUSES)}, not {shown(status)}")
    query = _query(shop_id).order_by(Referral.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Referral.status == status)
    if link_id is not None:
        query = query.where(Referral.link_id == link_id)
    if advocate is not None:
        query = query.where(Customer.shopify_customer_id == advocate)
    if before_id is not None:
        query = query.where(Referral.id < before_id)
    return [ReferralRow(*row) for row in session.execute(query).all()]


def get_referral(session: Session, shop_id: int, referral_id: int) -> ReferralRow:
    """One of the shop's referrals; ``NotFound`` for another shop's, exactly as for one that never was."""
    row = session.execute(_query(shop_id).where(Referral.id == referral_id)).one_or_none()
    if row is None:
        raise NotFound(f"no referral {referral_id} for this store")
    return ReferralRow(*row)


def _at(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount:.2f}"


def explanation(referral: Referral) -> str:
    """The referral's state in plain words: its reason's when it has one, else its status's."""
    if referral.reason is not None:
        return REASONS.get(referral.reason, referral.reason)
    if referral.status == "held":
        return (f"held until {referral.hold_until:%Y-%m-%d %H:%M} UTC; a cancellation or a refund beyond the "
                "allowed share before then voids it")
    return STATUSES.get(referral.status, referral.status)


def referral_json(row: ReferralRow) -> dict[str, Any]:
    """A referral as the API and the CLI show it; money as strings so no float ever rounds it."""
    referral = row.referral
    return {
        "id": referral.id,
        "status": referral.status,
        "reason": referral.reason,
        "explanation": explanation(referral),
        "link_id": referral.link_id,
        "advocate_customer_id": row.advocate_customer_id,
        "friend_code": referral.friend_code,
        "order": {"id": referral.shopify_order_id, "name": referral.order_name},
        "total": _money(referral.order_total),
        "discount": _money(referral.discount_amount),
        "currency": referral.currency,
        "ordered_at": _at(referral.ordered_at),
        "recorded_at": _at(referral.created_at),
        "hold_until": _at(referral.hold_until),
        "decided_at": _at(referral.decided_at),
        "reward_code": None if referral.reward_code_id is None else {"id": referral.reward_code_id,
                                                                     "code": row.reward_code},
    }
