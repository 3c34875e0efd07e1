"""Expiry: codes past their end stop counting as open.

Shopify ends a discount by itself at its ``endsAt``; this only brings our status in line, so that
the admin and the API stop offering an expired code as open. A redemption recorded later (an order
paid before the end whose webhook came late) still wins: reconciliation redeems whatever the status.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, exists, select, update
from sqlalchemy.orm import Session

from app.models import IssuedCode, Shop

BATCH = 1000
STILL_OPEN = ("created", "attached")  # a reserved code is the issuer's until it reaches the store


def shops_with_codes(session: Session) -> Select[tuple[int]]:
    """The shops that have codes at all (the sweep then works shop by shop)."""
    return select(Shop.id).where(exists().where(IssuedCode.shop_id == Shop.id)).order_by(Shop.id)


def expire_due(session: Session, shop_id: int, now: datetime, limit: int = BATCH) -> int:
    """Mark up to ``limit`` of the shop's open codes whose end has passed ``expired``; how many were marked."""
    due = (select(IssuedCode.id).where(IssuedCode.shop_id == shop_id, IssuedCode.status.in_(STILL_OPEN),
                                       IssuedCode.expires_at.is_not(None), IssuedCode.expires_at <= now)
           .limit(limit))
    return session.execute(  # type: ignore[attr-defined, no-any-return]
        update(IssuedCode).where(IssuedCode.shop_id == shop_id, IssuedCode.id.in_(due.scalar_subquery()),
                                 IssuedCode.status.in_(STILL_OPEN))
        .values(status="expired", claimed_by=None, claim_expires_at=None)
        .execution_options(synchronize_session=False)).rowcount
