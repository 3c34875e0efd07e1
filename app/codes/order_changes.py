"""What happens to an order after it was paid: its cancellation and its refunds, each recorded once.

These are the facts the referral hold reads (a referred order cancelled, or refunded beyond a share,
earns no reward). Shopify does not guarantee the order of deliveries, so a refund or a cancellation
can arrive before the order's ``orders/paid``, or without it (a dropped delivery). Each is therefore
kept in a table of its own keyed by the Shopify order id, not on the ``paid_orders`` row, which may
not exist yet:

- ``order_cancellations``, one row per order (an order is cancelled once, and never uncancelled);
- ``order_refunds``, one row per refund id, so a duplicate or replayed ``refunds/create``, and the
  same refund listed again in ``orders/cancelled`` or ``orders/paid``'s ``refunds``, counts once.

The ``paid_orders`` row carries a copy (``cancelled_at``, ``cancel_reason``, ``refunded_amount``, the
sum of the refunds), recomputed from those tables by whichever comes second: recording a change when
the paid order exists, or reconciliation when it records the order. Both take the same per-order
transaction lock first (``lock_order``), so a refund committed while ``orders/paid`` is recording the
order is never missed by both: the second to take the lock sees what the first committed.

Refunded money is what the refund's successful ``refund`` transactions paid back, in the shop's
currency when Shopify gives a ``shop_money`` amount, else the transaction's own ``amount`` (the
shop's currency unless the buyer paid in another one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from app.codes import rewards
from app.codes.reconciliation import InvalidOrder, _amount, _currency, _order_id, moment
from app.db import insert_ignoring_conflict, utcnow
from app.models import OrderCancellation, OrderRefund, PaidOrder

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class RefundFacts:
    refund_id: int
    order_id: int
    amount: Decimal
    currency: str | None
    refunded_at: datetime

    @classmethod
    def from_webhook(cls, payload: Mapping[str, Any], order_id: int | None = None) -> RefundFacts:
        """From a ``refunds/create`` body, or an entry of an order's ``refunds`` (the same Refund resource)."""
        refund_id = _order_id(payload.get("id"))
        owner = _order_id(payload.get("order_id")) if payload.get("order_id") is not None else order_id
        if owner is None:
            raise InvalidOrder("the refund names no order_id")
        amount, currency = ZERO, None
        for transaction in payload.get("transactions") or []:
            if not isinstance(transaction, Mapping):
                continue
            if transaction.get("kind") != "refund" or transaction.get("status") != "success":
                continue  # a failed or pending refund paid nothing back
            paid, currency = _transaction_money(transaction, currency)
            amount += paid
        return cls(refund_id=refund_id, order_id=owner, amount=amount, currency=currency,
                   refunded_at=moment(payload.get("processed_at") or payload.get("created_at"), "processed_at"))


@dataclass(frozen=True)
class OrderChanges:
    """An order's cancellation (if any) and the refunds it lists, from an Order resource body."""

    order_id: int
    cancelled_at: datetime | None
    cancel_reason: str | None
    refunds: tuple[RefundFacts, ...]

    @classmethod
    def from_webhook(cls, payload: Mapping[str, Any]) -> OrderChanges:
        """From ``orders/cancelled`` (or ``orders/paid``: a paid order may already have refunds)."""
        order_id = _order_id(payload.get("id"))
        cancelled = payload.get("cancelled_at")
        reason = payload.get("cancel_reason")
        return cls(order_id=order_id,
                   cancelled_at=moment(cancelled, "cancelled_at") if cancelled else None,
                   cancel_reason=str(reason).strip().lower()[:32] or None if reason is not None else None,
                   refunds=tuple(RefundFacts.from_webhook(entry, order_id) for entry in payload.get("refunds") or []
                                 if isinstance(entry, Mapping)))


@dataclass
class Recorded:
    """What recording changes did: new facts now, and whether the paid order is recorded yet."""

    cancelled: bool = False  # the cancellation is new
    refunds: int = 0  # refunds new now
    seen_refunds: int = 0  # refunds recorded before (duplicates, replays)
    order_known: bool = False
    referral_voided: str | None = None  # the reason the order's held referral was voided now


    def summary(self) -> str:
        parts = []
        if self.cancelled:
            parts.append("cancellation recorded")
        if self.refunds or not self.seen_refunds:
            parts.append(f"{self.refunds} refund{'s' if self.refunds != 1 else ''} recorded")
        if self.seen_refunds:
            parts.append(f"{self.seen_refunds} seen before")
        where = "on the paid order" if self.order_known else "kept until the order's orders/paid"
        voided = f"; referral voided ({self.referral_voided})" if self.referral_voided else ""
        return ", ".join(parts or ["nothing new"]) + f" ({where})" + voided


def record_changes(session: Session, shop_id: int, changes: OrderChanges) -> Recorded:
    """Record the order's cancellation and refunds once each, and bring its paid order's copy up to date.

    Runs in the caller's transaction (the webhook job commits it with its event).
    """
    lock_order(session, shop_id, changes.order_id)
    result = Recorded()
    if changes.cancelled_at is not None:
        result.cancelled = insert_ignoring_conflict(
            session, OrderCancellation, ["shop_id", "shopify_order_id"], shop_id=shop_id,
            shopify_order_id=changes.order_id, cancelled_at=changes.cancelled_at,
            cancel_reason=changes.cancel_reason, recorded_at=utcnow())
        if not result.cancelled and changes.cancel_reason is not None:
            # Catch-up recorded it first, from the Admin API's Order, which does not say why.
            session.execute(update(OrderCancellation).where(
                OrderCancellation.shop_id == shop_id, OrderCancellation.shopify_order_id == changes.order_id,
                OrderCancellation.cancel_reason.is_(None)).values(cancel_reason=changes.cancel_reason))
    for refund in changes.refunds:
        if _insert_refund(session, shop_id, refund):
            result.refunds += 1
        else:
            result.seen_refunds += 1
    result.order_known = sync_paid_order(session, shop_id, changes.order_id)
    if result.cancelled or result.refunds:
        result.referral_voided = rewards.void_for_order_changes(session, shop_id, changes.order_id)
    return result


def record_refund(session: Session, shop_id: int, refund: RefundFacts) -> Recorded:
    """``refunds/create``: the refund, once per refund id."""
    lock_order(session, shop_id, refund.order_id)
    new = _insert_refund(session, shop_id, refund)
    result = Recorded(refunds=int(new), seen_refunds=int(not new),
                      order_known=sync_paid_order(session, shop_id, refund.order_id))
    if new:
        result.referral_voided = rewards.void_for_order_changes(session, shop_id, refund.order_id)
    return result


def _insert_refund(session: Session, shop_id: int, refund: RefundFacts) -> bool:
    return insert_ignoring_conflict(
        session, OrderRefund, ["shop_id", "refund_id"], shop_id=shop_id, refund_id=refund.refund_id,
        shopify_order_id=refund.order_id, amount=refund.amount, currency=refund.currency,
        refunded_at=refund.refunded_at, recorded_at=utcnow())


def sync_paid_order(session: Session, shop_id: int, order_id: int) -> bool:
    """Copy the order's cancellation and refund total onto its ``paid_orders`` row; False if there is none.

    Recomputed from the tables, never added to, so running it again changes nothing. The caller holds
    ``lock_order``.
    """
    cancellation = session.execute(select(OrderCancellation.cancelled_at, OrderCancellation.cancel_reason).where(
        OrderCancellation.shop_id == shop_id, OrderCancellation.shopify_order_id == order_id)).first()
    refunded = session.scalar(select(func.coalesce(func.sum(OrderRefund.amount), 0)).where(
        OrderRefund.shop_id == shop_id, OrderRefund.shopify_order_id == order_id))
    changed = session.execute(
        update(PaidOrder).where(PaidOrder.shop_id == shop_id, PaidOrder.shopify_order_id == order_id)
        .values(cancelled_at=cancellation[0] if cancellation else None,
                cancel_reason=cancellation[1] if cancellation else None,
                refunded_amount=Decimal(refunded or 0).quantize(Decimal("0.01")))
        .execution_options(synchronize_session=False))
    return changed.rowcount == 1  # type: ignore[attr-defined]


def lock_order(session: Session, shop_id: int, order_id: int) -> None:
    """A transaction lock on one order of one shop (PostgreSQL advisory lock; SQLite has one writer at
    a time anyway), held until commit: serialises recording a change with recording the paid order."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"oncecode:order:{shop_id}:{order_id}".encode()).digest()
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": int.from_bytes(digest[:8], "big", signed=True)})


def changes_of(session: Session, shop_id: int, order_id: int) -> dict[str, Any]:
    """The order's recorded cancellation and refunds, for the CLI, the API and tests."""
    cancellation = session.scalar(select(OrderCancellation).where(
        OrderCancellation.shop_id == shop_id, OrderCancellation.shopify_order_id == order_id))
    refunds = session.scalars(select(OrderRefund).where(
        OrderRefund.shop_id == shop_id, OrderRefund.shopify_order_id == order_id).order_by(OrderRefund.refunded_at,
                                                                                            OrderRefund.id)).all()
    return {
        "order_id": order_id,
        "cancelled_at": cancellation.cancelled_at.isoformat() if cancellation else None,
        "cancel_reason": cancellation.cancel_reason if cancellation else None,
        "refunds": [{"refund_id": r.refund_id, "amount": str(r.amount), "currency": r.currency,
                     "refunded_at": r.refunded_at.isoformat()} for r in refunds],
        "refunded_amount": str(sum((r.amount for r in refunds), ZERO)),
    }


def _transaction_money(transaction: Mapping[str, Any], currency: str | None) -> tuple[Decimal, str | None]:
    shop_money = ((transaction.get("amount_set") or {}).get("shop_money")) or {}
    if shop_money.get("amount") is not None:
        return (_amount(shop_money["amount"], "transactions[].amount_set.shop_money.amount"),
                _currency(shop_money.get("currency_code") or currency, "transactions[].currency"))
    value = _amount(transaction.get("amount"), "transactions[].amount")
    given = transaction.get("currency")
    return value, _currency(given, "transactions[].currency") if given else currency
