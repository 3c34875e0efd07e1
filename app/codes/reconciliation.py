"""Redemption reconciliation: a paid order's discount codes matched to the codes we issued, once.

The same function serves both ways an order reaches us: the ``orders/paid`` webhook (a REST-shaped
Order) and catch-up reconciliation (a GraphQL ``Order`` node, ``app.codes.catch_up``). Each becomes a
``PaidOrderFacts`` first, so both record an order identically:

- The order is recorded once per shop (``paid_orders``, unique on the Shopify order id), with its
  totals in the shop's currency, whether or not it used a code of ours: the average order value
  with and without our codes is computed from these rows.
- Each of its codes that we issued (compared in upper case, as Shopify compares codes) is redeemed
  by a compare-and-set on ``order_id IS NULL``: a replayed webhook, a second paid event, or catch-up
  reading the order again finds the code redeemed by this very order and changes nothing; two
  deliveries racing are serialised by that row's lock.
- A code already redeemed by another order is an anomaly (Shopify's usage limit of 1 should make it
  impossible): the first redemption stands and a ``redemption_anomalies`` row records the other order.

Money comes from the ``shop_money`` side of Shopify's money bags, so an order the buyer paid in
another (presentment) currency is counted in the shop's currency like every other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import insert_ignoring_conflict, utcnow
from app.errors import OnceCodeError
from app.models import IssuedCode, PaidOrder, PoolCode, RedemptionAnomaly

log = logging.getLogger(__name__)

# displayFinancialStatus values of an order that has been paid (refunds come after payment).
PAID_STATUSES = frozenset({"PAID", "PARTIALLY_REFUNDED", "REFUNDED"})
REST_PAID_STATUSES = frozenset(status.lower() for status in PAID_STATUSES)


class InvalidOrder(OnceCodeError):
    """An order payload without what reconciliation needs (an id, totals, a time). Not worth a retry."""

    status = 422


@dataclass(frozen=True)
class UsedCode:
    code: str  # upper case
    amount: Decimal | None  # what it took off the order in the shop's currency; None when not known


@dataclass(frozen=True)
class PaidOrderFacts:
    """What reconciliation needs of a paid order, whichever API it came from."""

    order_id: int
    name: str
    currency: str
    total_price: Decimal
    subtotal_price: Decimal
    total_discounts: Decimal
    paid_at: datetime
    codes: tuple[UsedCode, ...]
    paid: bool = True
    customer_id: int | None = None  # the buyer's Shopify id; None for a guest checkout
    # The keyed fingerprint of the buyer's email (``fingerprints``), for the self-referral check: the
    # email itself is never kept.
    buyer_email_hash: str | None = field(default=None, repr=False)

    @classmethod
    def from_webhook(cls, payload: Mapping[str, Any], email_key: str | None = None) -> PaidOrderFacts:
        """From an ``orders/paid`` body (Shopify's REST Order resource); ``email_key`` fingerprints the
        buyer's email."""
        order_id = _order_id(payload.get("id"))
        customer = payload.get("customer") if isinstance(payload.get("customer"), Mapping) else {}
        total, currency = _rest_money(payload, "total_price")
        subtotal, _ = _rest_money(payload, "subtotal_price", currency)
        discounts, _ = _rest_money(payload, "total_discounts", currency)
        status = str(payload.get("financial_status") or "paid").lower()
        return cls(order_id=order_id, name=_name(payload.get("name"), order_id), currency=currency,
                   total_price=total, subtotal_price=subtotal, total_discounts=discounts,
                   paid_at=moment(payload.get("processed_at") or payload.get("created_at"), "processed_at"),
                   codes=_rest_codes(payload), paid=status in REST_PAID_STATUSES,
                   customer_id=_buyer(customer.get("id")),
                   buyer_email_hash=_fingerprint(email_key, customer.get("email") or payload.get("email")))

    @classmethod
    def from_graphql(cls, node: Mapping[str, Any], email_key: str | None = None) -> PaidOrderFacts:
        """From an ``Order`` node of the Admin GraphQL ``orders`` query (``graphql/orders.graphql``).

        The query gives each order's codes but not what each took off, only the order's whole
        discount: that is the code's amount when the order has a single code, and unknown (None)
        when it has several.
        """
        order_id = _order_id(str(node.get("legacyResourceId") or node.get("id") or "").rsplit("/", 1)[-1])
        total, currency = _graphql_money(node, "totalPriceSet")
        subtotal, _ = _graphql_money(node, "subtotalPriceSet", currency)
        discounts, _ = _graphql_money(node, "totalDiscountsSet", currency)
        codes = _distinct(str(code) for code in node.get("discountCodes") or [])
        used = tuple(UsedCode(code, discounts if len(codes) == 1 else None) for code in codes)
        customer = node.get("customer") if isinstance(node.get("customer"), Mapping) else {}
        return cls(order_id=order_id, name=_name(node.get("name"), order_id), currency=currency,
                   total_price=total, subtotal_price=subtotal, total_discounts=discounts,
                   paid_at=moment(node.get("processedAt") or node.get("createdAt"), "processedAt"), codes=used,
                   paid=node.get("displayFinancialStatus") in PAID_STATUSES,
                   customer_id=_buyer(customer.get("legacyResourceId")),
                   buyer_email_hash=_fingerprint(email_key, node.get("email")))


@dataclass
class Reconciled:
    """What one reconciliation did. ``new_order`` is False when the order had been recorded before."""

    new_order: bool
    redeemed: list[int] = field(default_factory=list)  # our codes redeemed now
    already: int = 0  # our codes this order had redeemed before (a replay)
    anomalies: int = 0  # our codes another order had redeemed (newly flagged)
    other_codes: int = 0  # codes on the order that are not ours
    friend_codes: int = 0  # friend codes (from a referral pool) the order used
    referral: str | None = None  # what recording its referral did (``rewards.Recorded.summary``)
    reward_reserved: bool = False  # the advocate's reward code was reserved now: queue its issuance

    def summary(self) -> str:
        parts = [f"{len(self.redeemed)} redeemed"]
        if self.already:
            parts.append(f"{self.already} already redeemed by this order")
        if self.anomalies:
            parts.append(f"{self.anomalies} redeemed by another order (anomaly)")
        if self.friend_codes:
            parts.append(f"{self.friend_codes} friend code{'s' if self.friend_codes > 1 else ''}")
        if self.other_codes:
            parts.append(f"{self.other_codes} other code{'s' if self.other_codes > 1 else ''}")
        if self.referral:
            parts.append(self.referral)
        return ("new order: " if self.new_order else "order seen before: ") + ", ".join(parts)


def reconcile(session: Session, shop_id: int, order: PaidOrderFacts, source: str) -> Reconciled:
    """Record the paid order and redeem the codes of ours it used, each exactly once.

    Runs in the caller's transaction: the caller commits (the webhook job with its event, catch-up
    with its page and cursor), so an order is never half recorded.
    """
    wanted = {used.code: used for used in order.codes}
    ours = session.execute(
        select(IssuedCode.id, IssuedCode.code, IssuedCode.order_id)
        .where(IssuedCode.shop_id == shop_id, IssuedCode.code.in_(sorted(wanted)))
        .order_by(IssuedCode.id)).all() if wanted else []
    left = sorted(set(wanted) - {code for _, code, _ in ours})
    friends = session.execute(
        select(PoolCode.id, PoolCode.code)
        .where(PoolCode.shop_id == shop_id, PoolCode.code.in_(left), PoolCode.status != "anchor")
        .order_by(PoolCode.id)).all() if left else []
    others = len(left) - len(friends)
    # Imported here: order_changes reads orders with this module's parsers; rewards issues codes.
    from app.codes import order_changes, rewards

    # A refund or cancellation recorded before this order (out-of-order delivery) is copied onto its
    # row below; the lock makes one that commits meanwhile wait, then see this row (order_changes).
    order_changes.lock_order(session, shop_id, order.order_id)
    result = Reconciled(other_codes=others, new_order=insert_ignoring_conflict(
        session, PaidOrder, ["shop_id", "shopify_order_id"], shop_id=shop_id, shopify_order_id=order.order_id,
        name=order.name, currency=order.currency, total_price=order.total_price,
        subtotal_price=order.subtotal_price, total_discounts=order.total_discounts, paid_at=order.paid_at,
        our_codes=len(ours) + len(friends), other_codes=others, source=source, recorded_at=utcnow(),
        shopify_customer_id=order.customer_id), friend_codes=len(friends))
    if result.new_order:
        order_changes.sync_paid_order(session, shop_id, order.order_id)
    # Rows in id order: two orders that share codes (an anomaly) lock them in the same order.
    for code_id, code, redeemed_by in ours:
        if redeemed_by is None and _redeem(session, shop_id, code_id, order, wanted[code].amount):
            result.redeemed.append(code_id)
            continue
        if redeemed_by is None:  # another transaction redeemed it just now: by this order, or another?
            redeemed_by = session.scalar(select(IssuedCode.order_id).where(
                IssuedCode.shop_id == shop_id, IssuedCode.id == code_id))
        if redeemed_by == order.order_id:
            result.already += 1
        elif insert_ignoring_conflict(session, RedemptionAnomaly, ["shop_id", "code_id", "shopify_order_id"],
                                      shop_id=shop_id, code_id=code_id, shopify_order_id=order.order_id,
                                      order_name=order.name, detected_at=utcnow()):
            result.anomalies += 1
            log.warning("code redeemed by a second order", extra={
                "code_id": code_id, "reason": f"order {order.order_id} after order {redeemed_by}"})
    # A friend code is single use: the order that wins it records the referral (one per order).
    for pool_code_id, code in friends:
        pool_code = _redeem_friend_code(session, shop_id, pool_code_id, order)
        if pool_code is not None and pool_code.link_id is not None and result.referral is None:
            recorded = rewards.record_referral(session, shop_id, order, pool_code, wanted[code].amount)
            result.referral, result.reward_reserved = recorded.summary(), recorded.reward_reserved
    return result


def _redeem_friend_code(session: Session, shop_id: int, pool_code_id: int, order: PaidOrderFacts) -> PoolCode | None:
    """Compare-and-set: the friend code is redeemed by this order if no order has it yet; the code, when
    this order has it (now, or already: a replay records nothing twice)."""
    session.execute(
        update(PoolCode).where(PoolCode.shop_id == shop_id, PoolCode.id == pool_code_id,
                               PoolCode.order_id.is_(None))
        .values(status="redeemed", order_id=order.order_id, redeemed_at=order.paid_at)
        .execution_options(synchronize_session=False))
    code = session.scalar(select(PoolCode).where(PoolCode.shop_id == shop_id, PoolCode.id == pool_code_id)
                          .execution_options(populate_existing=True))
    if code is None or code.order_id != order.order_id:
        log.warning("friend code used by a second order", extra={
            "shop_id": shop_id, "reason": f"order {order.order_id} after order {code and code.order_id}"})
        return None
    return code


def _redeem(session: Session, shop_id: int, code_id: int, order: PaidOrderFacts, amount: Decimal | None) -> bool:
    """Compare-and-set: the code takes this order's redemption if no order has it yet."""
    changed = session.execute(
        update(IssuedCode).where(IssuedCode.shop_id == shop_id, IssuedCode.id == code_id,
                                 IssuedCode.order_id.is_(None))
        .values(status="redeemed", redeemed_at=order.paid_at, order_id=order.order_id, order_name=order.name,
                order_total=order.total_price, order_subtotal=order.subtotal_price, discount_amount=amount,
                currency=order.currency, claimed_by=None, claim_expires_at=None)
        .execution_options(synchronize_session=False))
    return changed.rowcount == 1  # type: ignore[attr-defined]


def anomalies_of(session: Session, shop_id: int, code_id: int) -> list[dict[str, Any]]:
    """The other orders that used a code after its redemption, oldest first."""
    rows = session.scalars(select(RedemptionAnomaly).where(RedemptionAnomaly.shop_id == shop_id,
                                                           RedemptionAnomaly.code_id == code_id)
                           .order_by(RedemptionAnomaly.id)).all()
    return [{"order_id": row.shopify_order_id, "order_name": row.order_name,
             "detected_at": row.detected_at.isoformat()} for row in rows]


# --- reading Shopify's shapes ---------------------------------------------------------------------

def _order_id(value: Any) -> int:
    try:
        order_id = int(str(value))
    except (TypeError, ValueError):
        raise InvalidOrder(f"the order has no numeric id (got {value!r})") from None
    if order_id <= 0:
        raise InvalidOrder(f"the order has no numeric id (got {value!r})")
    return order_id


def _buyer(value: Any) -> int | None:
    """The buyer's Shopify customer id, or None (a guest checkout, or not a usable id)."""
    try:
        buyer = int(str(value))
    except (TypeError, ValueError):
        return None
    return buyer if 0 < buyer < 2**63 else None


def _fingerprint(key: str | None, email: Any) -> str | None:
    from app.codes.fingerprints import email_fingerprint  # it imports issuance, which imports this module

    return email_fingerprint(key, email) if key else None


def _name(value: Any, order_id: int) -> str:
    return str(value)[:64] if value else f"#{order_id}"


# Money columns are NUMERIC(14, 2): an amount from 10^12 up could not be stored (no shop's order is that big).
MAX_AMOUNT = Decimal(10) ** 12


def _amount(value: Any, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
        if amount.is_finite() and abs(amount) < MAX_AMOUNT:
            return amount.quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        pass
    raise InvalidOrder(f"{what} is not an amount: {str(value)[:40]!r}")


def _currency(value: Any, what: str) -> str:
    text = str(value or "")
    if len(text) != 3 or not text.isalpha():
        raise InvalidOrder(f"{what} is not a currency code: {value!r}")
    return text.upper()


def _rest_money(payload: Mapping[str, Any], name: str, currency: str | None = None) -> tuple[Decimal, str]:
    """A REST money field in the shop's currency: ``<name>_set.shop_money``, else the plain field."""
    shop_money = ((payload.get(f"{name}_set") or {}).get("shop_money")) or {}
    if shop_money.get("amount") is not None:
        return (_amount(shop_money["amount"], f"{name}_set.shop_money.amount"),
                _currency(shop_money.get("currency_code") or currency or payload.get("currency"),
                          f"{name}_set.shop_money.currency_code"))
    if payload.get(name) is None:
        if currency is not None and name != "total_price":
            return Decimal("0.00"), currency
        raise InvalidOrder(f"the order has no {name}")
    return _amount(payload[name], name), _currency(currency or payload.get("currency"), "currency")


def _graphql_money(node: Mapping[str, Any], name: str, currency: str | None = None) -> tuple[Decimal, str]:
    shop_money = ((node.get(name) or {}).get("shopMoney")) or {}
    if shop_money.get("amount") is None:
        if currency is not None:
            return Decimal("0.00"), currency  # e.g. subtotalPriceSet is nullable
        raise InvalidOrder(f"the order has no {name}.shopMoney")
    return (_amount(shop_money["amount"], f"{name}.shopMoney.amount"),
            _currency(shop_money.get("currencyCode") or currency, f"{name}.shopMoney.currencyCode"))


def moment(value: Any, what: str) -> datetime:
    """An ISO 8601 time from Shopify, in UTC; ``InvalidOrder`` naming ``what`` when it is not one."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidOrder(f"{what} is not a time: {value!r}") from None
    if moment.tzinfo is None:
        raise InvalidOrder(f"{what} has no time zone: {value!r}")
    return moment.astimezone(UTC)


def _distinct(codes: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for code in codes:
        if code.strip():
            seen.setdefault(code.strip().upper(), None)
    return list(seen)


def _rest_codes(payload: Mapping[str, Any]) -> tuple[UsedCode, ...]:
    """``discount_codes`` with each code's amount in the shop's currency.

    The amount is the sum of the code's discount allocations (``amount_set.shop_money``) over the
    line items and shipping lines, found through ``discount_applications``; ``discount_codes[].amount``
    is the fallback when the order carries no applications for it.
    """
    entries = [entry for entry in payload.get("discount_codes") or [] if isinstance(entry, Mapping)]
    applications = payload.get("discount_applications") or []
    index_of: dict[int, str] = {
        index: str(app.get("code") or "").strip().upper() for index, app in enumerate(applications)
        if isinstance(app, Mapping) and app.get("type") == "discount_code"}
    allocated: dict[str, Decimal] = {}
    for line in [*(payload.get("line_items") or []), *(payload.get("shipping_lines") or [])]:
        for allocation in (line.get("discount_allocations") or []) if isinstance(line, Mapping) else []:
            code = index_of.get(allocation.get("discount_application_index"))
            if code is None:
                continue
            shop_money = (allocation.get("amount_set") or {}).get("shop_money") or {}
            value = shop_money.get("amount", allocation.get("amount"))
            allocated[code] = allocated.get(code, Decimal(0)) + _amount(value, "discount_allocations[].amount")
    used: dict[str, UsedCode] = {}
    for entry in entries:
        code = str(entry.get("code") or "").strip().upper()
        if not code or code in used:
            continue
        if code in allocated or code in index_of.values():
            amount: Decimal | None = allocated.get(code, Decimal("0.00"))
        else:
            amount = _amount(entry["amount"], "discount_codes[].amount") if entry.get("amount") is not None else None
        used[code] = UsedCode(code, amount)
    return tuple(used.values())
