"""Welcome codes: every new customer gets one, once per customer per shop, ever."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.codes.issuance import remember_customer, reserve
from app.models import IssuedCode, Program, Shop

log = logging.getLogger(__name__)


def welcome_key(shop_id: int, shopify_customer_id: int) -> str:
    """The idempotency key of a customer's welcome code: duplicate webhooks and re-created customers share it."""
    return f"welcome:{shop_id}:{shopify_customer_id}"


@dataclass(frozen=True)
class SignUp:
    new_customer: bool
    code: IssuedCode | None  # the customer's welcome code, new or from an earlier delivery
    reason: str


def customer_signed_up(session: Session, shop: Shop, shopify_customer_id: int) -> SignUp:
    """``customers/create``: remember the customer and reserve their welcome code if the program is on.

    The caller queues the code's issuance once this transaction has committed.
    """
    customer, new = remember_customer(session, shop.id, shopify_customer_id)
    program = session.scalar(select(Program).where(Program.shop_id == shop.id, Program.kind == "welcome"))
    if program is None or not program.active:
        log.info("welcome code skipped: the welcome program is off", extra={"shop": shop.domain})
        return SignUp(new, None, "welcome program off: no code")
    row, reserved = reserve(session, program, customer, welcome_key(shop.id, shopify_customer_id))
    return SignUp(new, row, "welcome code reserved" if reserved else f"welcome code exists ({row.status})")
