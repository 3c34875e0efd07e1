"""What a merchant does to a paid order afterwards: cancel it or refund it, with Shopify's rules.

- An order is cancelled once; cancelling it again is refused (``Conflict``). A cancellation records
  ``cancelled_at`` and the reason (Shopify's ``OrderCancelReason``, in the REST form: ``customer``,
  ``declined``, ``fraud``, ``inventory``, ``other``, ``staff``) and, unless the merchant refunds later,
  refunds everything still refundable in one refund that covers every line item (restock type
  ``cancel``, or ``no_restock``) and the shipping: Shopify's admin cannot refund part of an order while
  cancelling it. It fires ``refunds/create`` (if anything was refunded), then ``orders/cancelled``.
- A refund gives back an amount, more than zero and at most what is still refundable (the total paid
  minus earlier refunds); a cancelled order can still be refunded later. An amount covers no line items,
  so Shopify records it as a refund discrepancy (an order adjustment). It fires ``refunds/create``.
- ``financial_status`` follows: ``partially_refunded`` while something is left, ``refunded`` once
  nothing is. devstore's orders are paid (captured) at once, so a cancellation refunds, never voids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from devstore import payloads
from devstore.checkout import get_store, parse_money
from devstore.errors import Conflict, InvalidInput, NotFound
from devstore.models import Customer, Order, Refund, Store
from devstore.state import State
from devstore.webhooks import emit

# Shopify's OrderCancelReason, as REST payloads write it (``cancel_reason``).
CANCEL_REASONS = ("customer", "declined", "fraud", "inventory", "other", "staff")


def get_order(session: Session, shop: str, order_id: int | str) -> Order:
    """The order ``order_id`` (its numeric id) on ``shop``, or ``NotFound``."""
    try:
        wanted = int(order_id)
    except (TypeError, ValueError):
        raise InvalidInput(f"order id must be an order's numeric id, not {order_id!r}") from None
    order = session.get(Order, wanted)
    if order is None or order.shop != shop:
        raise NotFound(f"no order {wanted} on {shop}")
    return order


def refunds_of(session: Session, order: Order) -> list[Refund]:
    """The order's refunds, oldest first."""
    return list(session.scalars(select(Refund).where(Refund.shop == order.shop, Refund.order_id == order.id)
                                .order_by(Refund.created_at, Refund.id)))


def refundable(order: Order) -> Decimal:
    """What can still be given back: the total paid minus every refund so far."""
    return order.total_price - order.total_refunded


def parse_reason(value: Any) -> str:
    """A cancel reason in either form (``customer`` or ``CUSTOMER``); none given is ``other``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "other"
    reason = str(value).strip().lower()
    if reason not in CANCEL_REASONS:
        raise InvalidInput(f"reason must be one of {', '.join(CANCEL_REASONS)}, not {value!r}")
    return reason


def cancel_order(session: Session, shop: str, order_id: int | str, *, reason: Any = None, refund: bool = True,
                 restock: bool = True, at: datetime | None = None) -> Order:
    """Cancel the order: refund what is left (unless ``refund`` is false), fire ``orders/cancelled``."""
    store = get_store(session, shop)
    order = get_order(session, shop, order_id)
    if order.cancelled_at is not None:
        raise Conflict(f"Order #{order.number} is already cancelled (since {payloads.timestamp(order.cancelled_at)}, "
                       f"reason {order.cancel_reason}): an order can be cancelled only once")
    cause = parse_reason(reason)
    moment = at or datetime.now(UTC)
    order.cancelled_at, order.cancel_reason, order.updated_at = moment, cause, moment
    left = refundable(order)
    if refund and left > 0:
        _record(session, store, order, amount=left, line_items=_every_line_item(order, restock),
                shipping=_shipping_paid(order), restock=restock, note=None, moment=moment)
    customer = session.get(Customer, order.customer_id) if order.customer_id is not None else None
    emit(session, shop, "orders/cancelled",
         payloads.order_payload(order, store, customer, refunds_of(session, order)), at=moment)
    return order


def refund_order(session: Session, shop: str, order_id: int | str, *, amount: Any, note: str | None = None,
                 at: datetime | None = None) -> Refund:
    """Give ``amount`` back on the order (at most what is left to refund); fire ``refunds/create``."""
    store = get_store(session, shop)
    order = get_order(session, shop, order_id)
    if amount is None or (isinstance(amount, str) and not amount.strip()):
        raise InvalidInput("amount is required: how much to refund, e.g. 10.00")
    value = parse_money(amount, "amount")
    if value <= 0:
        raise InvalidInput("amount must be more than 0.00")
    left = refundable(order)
    currency = order.currency
    if left <= 0:
        raise Conflict(f"Order #{order.number} has nothing left to refund: its {payloads.money(order.total_price)} "
                       f"{currency} were all refunded")
    if value > left:
        raise Conflict(f"A refund of {payloads.money(value)} {currency} is more than order #{order.number} has "
                       f"left to refund: {payloads.money(left)} {currency} (paid {payloads.money(order.total_price)}, "
                       f"refunded {payloads.money(order.total_refunded)})")
    text = note.strip() if isinstance(note, str) else None
    return _record(session, store, order, amount=value, line_items=[], shipping=None, restock=False,
                   note=text or None, moment=at or datetime.now(UTC))


def _every_line_item(order: Order, restock: bool) -> list[dict[str, Any]]:
    """Refund lines for the whole order: each item, all of its quantity, at what was paid for it."""
    restock_type = "cancel" if restock else "no_restock"
    return [{"id": State.new_id(), "line_item_id": item["id"], "quantity": item["quantity"],
             "subtotal": payloads.money(payloads.line_item_paid(item)), "restock_type": restock_type}
            for item in order.line_items]


def _shipping_paid(order: Order) -> Decimal:
    """The shipping the buyer paid: its price less a free-shipping code's amount."""
    return order.shipping_price - payloads.shipping_discount(order)


def _record(session: Session, store: Store, order: Order, *, amount: Decimal, line_items: list[dict[str, Any]],
            shipping: Decimal | None, restock: bool, note: str | None, moment: datetime) -> Refund:
    """Store the refund, move the order's money and status on, fire ``refunds/create``."""
    refund = Refund(id=State.new_id(), shop=store.domain, order_id=order.id, amount=amount, line_items=line_items,
                    shipping=shipping, restock=restock, note=note, transaction_id=State.new_id(), created_at=moment)
    session.add(refund)
    order.total_refunded = order.total_refunded + amount
    order.financial_status = "refunded" if refundable(order) <= 0 else "partially_refunded"
    order.updated_at = moment
    session.flush()
    emit(session, store.domain, "refunds/create", payloads.refund_payload(refund, order, store), at=moment)
    return refund
