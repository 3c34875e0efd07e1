"""A customer's own codes, as the storefront page (the app proxy) shows them to that customer.

Only codes the customer can use at checkout right now: on the store (``created`` or ``attached``),
not used, revoked, removed or past their end — a ``reserved`` code is not on the store yet and would be
refused. The offer shown is the one frozen on the code when it was issued (``IssuedCode.terms``), not
the program's current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Customer, IssuedCode

USABLE_STATUSES = ("created", "attached")


@dataclass(frozen=True)
class CustomerCode:
    code: str
    kind: str  # the program's kind: welcome, referral_reward, manual, ...
    program_name: str  # as the merchant named the program when the code was issued
    value_type: str  # percentage | fixed_amount | free_shipping
    value: Decimal  # percent (10 = 10 %) or an amount in the shop's currency; 0 for free shipping
    minimum_subtotal: Decimal | None
    expires_at: datetime | None
    redirect_path: str | None  # where the code's shareable link lands on the store


def open_codes(session: Session, shop_id: int, shopify_customer_id: int,
               now: datetime | None = None) -> list[CustomerCode]:
    """The codes one customer of one shop can use now, soonest to expire first (no expiry last)."""
    moment = now or utcnow()
    rows = session.scalars(
        select(IssuedCode)
        .join(Customer, Customer.id == IssuedCode.customer_id)
        .where(IssuedCode.shop_id == shop_id, Customer.shop_id == shop_id,
               Customer.shopify_customer_id == shopify_customer_id,
               IssuedCode.status.in_(USABLE_STATUSES), IssuedCode.revoked_at.is_(None),
               IssuedCode.removed_from_store_at.is_(None),
               or_(IssuedCode.expires_at.is_(None), IssuedCode.expires_at > moment))
        .order_by(IssuedCode.expires_at.is_(None), IssuedCode.expires_at, IssuedCode.id)
    ).all()
    return [_shown(row) for row in rows]


def is_open(status: str, revoked_at: datetime | None, removed_at: datetime | None, expires_at: datetime | None,
            now: datetime) -> bool:
    """Whether a code with these facts can be used at checkout at ``now`` (what ``open_codes`` selects)."""
    return (status in USABLE_STATUSES and revoked_at is None and removed_at is None
            and (expires_at is None or expires_at > now))


def offer_text(value_type: str, value: Decimal, minimum_subtotal: Decimal | None, currency: str | None) -> str:
    """What an offer takes off, in words: "15 % off", "5.00 EUR off on orders of 20.00 EUR or more"."""
    def money(amount: Decimal) -> str:
        return f"{amount:.2f} {currency}" if currency else f"{amount:.2f}"

    if value_type == "percentage":
        text = f"{value.normalize():f} % off"
    elif value_type == "fixed_amount":
        text = f"{money(value)} off"
    else:
        text = "free shipping"
    if minimum_subtotal:
        text += f" on orders of {money(minimum_subtotal)} or more"
    return text


def _shown(row: IssuedCode) -> CustomerCode:
    terms = row.terms or {}
    return CustomerCode(
        code=row.code, kind=str(terms.get("kind") or ""), program_name=str(terms.get("name") or ""),
        value_type=str(terms.get("value_type") or ""), value=_decimal(terms.get("value")) or Decimal(0),
        minimum_subtotal=_decimal(terms.get("minimum_subtotal")), expires_at=row.expires_at,
        redirect_path=terms.get("redirect_path"))


def _decimal(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None
