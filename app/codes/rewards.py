"""Referral rewards: a paid order that used a friend code becomes a referral, held, then rewarded once.

The loop's second half (DESIGN.md, Referrals):

- **Recording.** Reconciliation calls ``record_referral`` for the friend code an order used, once it has
  won the code (a compare-and-set on the pool code, ``reconciliation``). The referral is one row per
  order (unique ``shop_id, shopify_order_id``): an order that used two friend codes, a replayed
  ``orders/paid``, catch-up reading the order again, all find the row and change nothing.
- **Fraud controls** run here, where the facts are, each block kept on the row (``blocked`` and its
  ``reason``) for the merchant: the buyer is the advocate (``self_referral``, always, whatever the
  settings); the buyer's email fingerprint is the advocate's (``same_email``, ``block_same_email``);
  the buyer paid an order before this one (``not_first_order``, ``first_order_only``); the advocate
  has had ``rewards_per_advocate_per_month`` referrals held or rewarded this calendar month, in the
  store's time zone (``advocate_monthly_cap``). The advocate's customer row is locked while the cap
  is counted, so two friends' orders recorded at once cannot both take the last place.
- **Hold.** A recorded referral is ``held`` until ``hold_until`` (the order's time plus the reward
  program's ``hold_days``). A cancellation, or refunds beyond ``void_refund_percent`` of the order's
  total, dated within the hold, void it (``void_for_order_changes``, called by ``order_changes`` when
  such a change is recorded, and checked again when the hold ends: Shopify does not promise the order
  of deliveries).
- **Reward.** When the hold has ended (``release_due``, scheduled; or at once when ``hold_days`` is 0),
  the referral is rewarded: the advocate's code is reserved through the exactly-once issuance with the
  key ``referral:<shop>:<order>`` (one reward per referred order, whatever runs twice), on the
  referral-reward program's current terms, locked to the advocate and attached like a welcome code.
  The row is locked and moved from ``held`` in the same transaction, so concurrent releases reward once.

Nothing here calls the Admin API: the reserved code is carried to the store by the issuing jobs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.codes.issuance import reserve
from app.db import insert_ignoring_conflict, utcnow
from app.models import (
    Customer,
    OrderCancellation,
    OrderRefund,
    PaidOrder,
    PoolCode,
    Program,
    Referral,
    ReferralLink,
    Shop,
)

if TYPE_CHECKING:
    from app.codes.reconciliation import PaidOrderFacts

log = logging.getLogger(__name__)

PROGRAM_KIND = "referral_reward"
RELEASE_BATCH = 100  # referrals rewarded in one transaction
COUNTED = ("held", "rewarded")  # referrals that take a place under the monthly cap

def reward_key(shop_id: int, order_id: int) -> str:
    """The idempotency key of the reward for one referred order: one reward per order, ever."""
    return f"referral:{shop_id}:{order_id}"


@dataclass(frozen=True)
class Recorded:
    """What recording a friend code's redemption did. ``reward_reserved``: a code to issue now."""

    referral_id: int | None
    status: str  # held, rewarded, voided, blocked; "seen" when the order had been recorded before
    reason: str | None = None
    reward_reserved: bool = False

    def summary(self) -> str:
        if self.status == "seen":
            return "referral recorded before"
        return f"referral {self.status}" + (f" ({self.reason})" if self.reason else "")


def reward_program(session: Session, shop_id: int) -> Program | None:
    return session.scalar(select(Program).where(Program.shop_id == shop_id, Program.kind == PROGRAM_KIND))


def record_referral(session: Session, shop_id: int, order: PaidOrderFacts, code: PoolCode,
                    discount: Decimal | None, now: datetime | None = None) -> Recorded:
    """Record that ``order`` used the friend ``code`` (already marked redeemed by this order).

    Runs in reconciliation's transaction, which holds the order's lock (``order_changes.lock_order``).
    """
    now = now or utcnow()
    if session.scalar(select(Referral.id).where(Referral.shop_id == shop_id,
                                                Referral.shopify_order_id == order.order_id)) is not None:
        return Recorded(None, "seen")  # a replay, or the order's other friend code
    program = reward_program(session, shop_id)
    hold_days = program.hold_days if program is not None else 0
    link = session.get(ReferralLink, code.link_id) if code.link_id is not None else None
    advocate = None
    if link is not None and link.shop_id == shop_id and link.customer_id is not None:
        # Locked: the monthly cap is counted, and the place taken, one order at a time per advocate.
        advocate = session.scalar(select(Customer).where(Customer.shop_id == shop_id, Customer.id == link.customer_id)
                                  .with_for_update())
    reason = _blocked(session, shop_id, order, advocate, program)
    inserted = insert_ignoring_conflict(
        session, Referral, ["shop_id", "shopify_order_id"], shop_id=shop_id,
        program_id=program.id if program is not None else None, link_id=link.id if link is not None else None,
        advocate_id=advocate.id if advocate is not None else None, pool_code_id=code.id, friend_code=code.code,
        friend_customer_id=order.customer_id, shopify_order_id=order.order_id, order_name=order.name,
        currency=order.currency, order_total=order.total_price, discount_amount=discount,
        ordered_at=order.paid_at, status="blocked" if reason else "held", reason=reason,
        hold_until=order.paid_at + timedelta(days=hold_days), created_at=now, decided_at=now if reason else None)
    if not inserted:
        return Recorded(None, "seen")
    referral = session.scalars(select(Referral).where(Referral.shop_id == shop_id,
                                                      Referral.shopify_order_id == order.order_id)).one()
    if reason:
        log.info("referral blocked", extra={"shop_id": shop_id, "referral_id": referral.id, "reason": reason})
        return Recorded(referral.id, "blocked", reason)
    # A cancellation or refund that came before the order's orders/paid is already recorded.
    voided = _void_reason(session, referral, program)
    if voided is not None:
        _decide(referral, "voided", voided, now)
        return Recorded(referral.id, "voided", voided)
    if referral.hold_until <= now:
        reserved = _reward(session, referral, program, now)
        return Recorded(referral.id, referral.status, referral.reason, reward_reserved=reserved)
    return Recorded(referral.id, "held")


def _blocked(session: Session, shop_id: int, order: PaidOrderFacts, advocate: Customer | None,
             program: Program | None) -> str | None:
    """The fraud control that refuses this referral, or None."""
    if advocate is None:
        return "no_advocate"
    if order.customer_id is not None and order.customer_id == advocate.shopify_customer_id:
        return "self_referral"  # never rewarded, whatever the settings
    if program is None:
        return None  # no settings to apply: the hold's end finds the program missing and voids it
    if (program.block_same_email and order.buyer_email_hash is not None
            and order.buyer_email_hash == advocate.email_hash):
        return "same_email"
    if program.first_order_only and order.customer_id is not None and session.scalar(
            select(PaidOrder.id).where(PaidOrder.shop_id == shop_id,
                                       PaidOrder.shopify_customer_id == order.customer_id,
                                       PaidOrder.paid_at < order.paid_at,
                                       PaidOrder.shopify_order_id != order.order_id).limit(1)) is not None:
        return "not_first_order"
    cap = program.rewards_per_advocate_per_month
    if cap:
        start, end = _month_of(session, shop_id, order.paid_at)
        taken = session.scalar(select(func.count()).select_from(Referral).where(
            Referral.shop_id == shop_id, Referral.advocate_id == advocate.id, Referral.status.in_(COUNTED),
            Referral.ordered_at >= start, Referral.ordered_at < end))
        if taken >= cap:
            return "advocate_monthly_cap"
    return None


def _month_of(session: Session, shop_id: int, moment: datetime) -> tuple[datetime, datetime]:
    """The calendar month holding ``moment`` in the store's time zone, as UTC bounds."""
    name = session.scalar(select(Shop.iana_timezone).where(Shop.id == shop_id)) or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = moment.astimezone(zone)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start.astimezone(UTC), end.astimezone(UTC)


# --- the hold -----------------------------------------------------------------------------------


def _void_reason(session: Session, referral: Referral, program: Program | None) -> str | None:
    """``order_cancelled`` or ``order_refunded`` when such a change of the order, dated within the
    hold, voids the referral; None otherwise."""
    cancelled_at = session.scalar(select(OrderCancellation.cancelled_at).where(
        OrderCancellation.shop_id == referral.shop_id, OrderCancellation.shopify_order_id == referral.shopify_order_id))
    if cancelled_at is not None and cancelled_at <= referral.hold_until:
        return "order_cancelled"
    refunded = session.scalar(select(func.coalesce(func.sum(OrderRefund.amount), 0)).where(
        OrderRefund.shop_id == referral.shop_id, OrderRefund.shopify_order_id == referral.shopify_order_id,
        OrderRefund.refunded_at <= referral.hold_until))
    percent = program.void_refund_percent if program is not None else 0
    if Decimal(refunded or 0) > referral.order_total * percent / 100:
        return "order_refunded"
    return None


def void_for_order_changes(session: Session, shop_id: int, order_id: int, now: datetime | None = None) -> str | None:
    """The order's referral, if held, voided by the cancellation or refunds recorded for it; the reason, or None.

    A cancellation also renames the reason of a referral its refund voided first (Shopify refunds a
    cancelled order, and may deliver the refund before the cancellation): the merchant sees why.
    Called when a change is recorded, in that transaction (which holds the order's lock).
    """
    referral = session.scalar(select(Referral).where(
        Referral.shop_id == shop_id, Referral.shopify_order_id == order_id,
        or_(Referral.status == "held", and_(Referral.status == "voided", Referral.reason == "order_refunded")))
        .with_for_update())
    if referral is None:
        return None
    reason = _void_reason(session, referral, reward_program(session, shop_id))
    if reason is None or reason == referral.reason:
        return None
    _decide(referral, "voided", reason, now or utcnow())
    log.info("referral voided", extra={"shop_id": shop_id, "referral_id": referral.id, "reason": reason})
    return reason


def _decide(referral: Referral, status: str, reason: str | None, now: datetime) -> None:
    referral.status, referral.reason, referral.decided_at = status, reason, now


def _reward(session: Session, referral: Referral, program: Program | None, now: datetime) -> bool:
    """End the hold of a held referral (locked by the caller): rewarded, or voided. True when a reward
    code was reserved now (the caller queues its issuance after commit)."""
    if program is None or not program.active:
        _decide(referral, "voided", "reward_program_off", now)
        return False
    advocate = session.get(Customer, referral.advocate_id) if referral.advocate_id is not None else None
    if advocate is None or advocate.shop_id != referral.shop_id:
        _decide(referral, "voided", "advocate_erased", now)
        return False
    code, reserved = reserve(session, program, advocate, reward_key(referral.shop_id, referral.shopify_order_id), now)
    referral.reward_code_id = code.id
    _decide(referral, "rewarded", None, now)
    log.info("referral rewarded", extra={"shop_id": referral.shop_id, "referral_id": referral.id,
                                         "code_id": code.id})
    return reserved


@dataclass
class Released:
    rewarded: int = 0
    voided: int = 0
    reserved: int = 0  # reward codes reserved now, to be issued

    def as_dict(self) -> dict[str, int]:
        return {"rewarded": self.rewarded, "voided": self.voided, "reserved": self.reserved}


def release_due(session: Session, shop_id: int, now: datetime | None = None, limit: int = RELEASE_BATCH) -> Released:
    """End the hold of up to ``limit`` of the shop's held referrals whose hold has ended, oldest first.

    Rows another transaction is deciding are skipped (``SKIP LOCKED``); each is re-read locked and
    decided from ``held`` only, so running this twice or concurrently rewards each referral once.
    """
    now = now or utcnow()
    query = (select(Referral).where(Referral.shop_id == shop_id, Referral.status == "held",
                                    Referral.hold_until <= now)
             .order_by(Referral.hold_until, Referral.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    program = reward_program(session, shop_id)
    result = Released()
    for referral in session.scalars(query).all():
        reason = _void_reason(session, referral, program)
        if reason is not None:
            _decide(referral, "voided", reason, now)
        elif _reward(session, referral, program, now):
            result.reserved += 1
        if referral.status == "rewarded":
            result.rewarded += 1
        else:
            result.voided += 1
    return result


def shops_with_due_referrals(session: Session, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Shops (installed) with a held referral whose hold has ended."""
    now = now or utcnow()
    return list(session.scalars(
        select(Referral.shop_id).join(Shop, Shop.id == Referral.shop_id)
        .where(Referral.status == "held", Referral.hold_until <= now, Shop.uninstalled_at.is_(None))
        .group_by(Referral.shop_id).order_by(Referral.shop_id).limit(limit)))


def forget_buyer(session: Session, shop_id: int, shopify_customer_id: int) -> None:
    """``customers/redact``: the buyer's id leaves their referrals and paid orders (the figures stay)."""
    session.execute(update(Referral).where(Referral.shop_id == shop_id,
                                           Referral.friend_customer_id == shopify_customer_id)
                    .values(friend_customer_id=None).execution_options(synchronize_session=False))
    session.execute(update(PaidOrder).where(PaidOrder.shop_id == shop_id,
                                            PaidOrder.shopify_customer_id == shopify_customer_id)
                    .values(shopify_customer_id=None).execution_options(synchronize_session=False))

