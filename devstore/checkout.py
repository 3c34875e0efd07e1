"""What a store's buyers do: sign up as customers and place orders, paying at once, with codes.

The rules a code must pass follow Shopify's: it exists (case-insensitively), its discount is active
(started, not ended, not deactivated), its usage limit is not reached, it is not used twice by one
customer when limited to once per customer, the buyer is among its customers when it is restricted,
the subtotal meets its minimum, and codes on one order may combine. A discount with many redeem codes
(``discountRedeemCodeBulkAdd``) applies its usage limit and its once-per-customer rule to each code on
its own, not to the codes together, as Shopify does (a Shopify staff answer on the developer forum,
"Scope of usageLimit for Discounts with Multiple Codes via discountRedeemCodeBulkAdd", 2025): with
``usageLimit: 1`` every code is single-use, and a customer may use each of the codes once. A refused code raises
``CodeRefused`` naming the rule. Creating a customer fires ``customers/create``; an order, paid at
once, fires ``orders/paid``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from devstore import payloads
from devstore.errors import CodeRefused, Conflict, InvalidInput, NotFound
from devstore.models import Customer, Discount, DiscountCode, Order, Store
from devstore.state import State
from devstore.webhooks import emit

CENT = Decimal("0.01")
DEFAULT_SHIPPING = Decimal("10.00")
# The discount class of each kind, as ``combinesWith`` names the classes it may combine with.
DISCOUNT_CLASS = {"basic": "orderDiscounts", "free_shipping": "shippingDiscounts"}


def get_store(session: Session, shop: str) -> Store:
    """The store ``shop`` or ``NotFound``."""
    store = session.get(Store, shop)
    if store is None:
        raise NotFound(f"no store {shop!r} on this devstore")
    return store


# --- customers -------------------------------------------------------------------------------------

def create_customer(session: Session, shop: str, *, email: str | None = None, first_name: str | None = None,
                    last_name: str | None = None, phone: str | None = None, note: str | None = None,
                    address: Mapping[str, Any] | None = None, at: datetime | None = None) -> Customer:
    """Create a customer (every field optional, as on Shopify) and fire ``customers/create``."""
    store = get_store(session, shop)
    email, phone = _clean(email), _clean(phone)
    if email is not None:
        if "@" not in email:
            raise InvalidInput(f"email {email!r} is invalid")
        taken = session.scalar(select(Customer.id).where(Customer.shop == shop,
                                                         func.lower(Customer.email) == email.lower()))
        if taken is not None:
            raise Conflict(f"email {email} has already been taken (customer {taken})")
    moment = at or datetime.now(UTC)
    customer = Customer(
        id=State.new_id(), shop=shop, email=email, first_name=_clean(first_name), last_name=_clean(last_name),
        phone=phone, note=_clean(note), tags=[], created_at=moment, updated_at=moment,
        address={"id": State.new_id(), **{k: _clean(v) for k, v in (address or {}).items()}},
    )
    session.add(customer)
    emit(session, shop, "customers/create", payloads.customer_payload(customer, store), at=moment)
    return customer


def _clean(value: Any) -> Any:
    """Blank form fields mean "not given"."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


# --- orders ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LineItem:
    title: str
    price: Decimal
    quantity: int
    sku: str | None = None

    @property
    def total(self) -> Decimal:
        return self.price * self.quantity


@dataclass
class Applied:
    """A code that passed the rules, with what it takes off the order."""

    typed: str
    code: DiscountCode
    discount: Discount
    amount: Decimal = Decimal(0)


def parse_line_items(raw: Iterable[Mapping[str, Any]]) -> list[LineItem]:
    """Validate ``[{"title", "price", "quantity", "sku"?}]``; at least one item, prices ≥ 0, quantities ≥ 1."""
    items = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"line_items[{index}] must be an object with title, price and quantity")
        title = _clean(str(entry.get("title") or "")) or f"Item {index + 1}"
        price = parse_money(entry.get("price"), f"line_items[{index}].price")
        try:
            quantity = int(entry.get("quantity", 1))
        except (TypeError, ValueError):
            raise InvalidInput(f"line_items[{index}].quantity must be a whole number") from None
        if quantity < 1:
            raise InvalidInput(f"line_items[{index}].quantity must be at least 1")
        sku = entry.get("sku")
        items.append(LineItem(title, price, quantity, None if sku is None else _clean(str(sku))))
    if not items:
        raise InvalidInput("an order needs at least one line item")
    return items


def parse_money(value: Any, name: str) -> Decimal:
    """A non-negative amount with at most two decimals, from a string or a number."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"{name} must be an amount like 19.99, not {value!r}") from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(CENT):
        raise InvalidInput(f"{name} must be a non-negative amount with at most two decimals, not {value!r}")
    return amount.quantize(CENT)


def place_order(session: Session, shop: str, *, line_items: Iterable[Mapping[str, Any]],
                codes: Sequence[str] = (), customer_id: int | str | None = None, email: str | None = None,
                shipping_price: Any = DEFAULT_SHIPPING, at: datetime | None = None) -> Order:
    """Check out and pay at once: apply the codes, count their use, fire ``orders/paid``."""
    store = get_store(session, shop)
    moment = at or datetime.now(UTC)
    customer = _buyer(session, shop, customer_id)
    items = parse_line_items(line_items)
    shipping = parse_money(shipping_price, "shipping_price")
    email = _clean(email) or (customer.email if customer else None)
    subtotal = sum((item.total for item in items), Decimal(0))

    applied = [_redeemable(session, store, typed, customer, email, subtotal, moment)
               for typed in _distinct_codes(codes)]
    _check_combinations(applied)
    _price(applied, items, subtotal, shipping)
    for entry in applied:
        entry.code.usage_count += 1

    order = _build_order(store, customer, email, items, applied, subtotal, shipping, moment)
    store.next_order_number += 1
    session.add(order)
    emit(session, shop, "orders/paid", payloads.order_payload(order, store, customer), at=moment)
    return order


def _buyer(session: Session, shop: str, customer_id: int | str | None) -> Customer | None:
    if customer_id is None or customer_id == "":
        return None
    try:
        wanted = int(customer_id)
    except (TypeError, ValueError):
        raise InvalidInput(f"customer_id must be a customer's numeric id, not {customer_id!r}") from None
    customer = session.get(Customer, wanted)
    if customer is None or customer.shop != shop:
        raise NotFound(f"no customer {wanted} on {shop}")
    return customer


def _distinct_codes(codes: Sequence[str]) -> list[str]:
    typed = [code.strip() for code in codes if code and code.strip()]
    seen: set[str] = set()
    for code in typed:
        if code.upper() in seen:
            raise CodeRefused(code, "duplicate_code", f"Discount code {code!r} is entered twice")
        seen.add(code.upper())
    return typed


def find_code(session: Session, shop: str, typed: str) -> tuple[DiscountCode, Discount] | None:
    """The code ``typed`` on ``shop`` (any case) with its discount, or None if either is gone."""
    code = session.scalar(select(DiscountCode).where(DiscountCode.shop == shop,
                                                     DiscountCode.code_key == typed.upper()))
    if code is None:
        return None
    discount = session.get(Discount, code.discount_id)
    return None if discount is None else (code, discount)  # a discount deleted under its code: no code


def _redeemable(session: Session, store: Store, typed: str, customer: Customer | None, email: str | None,
                subtotal: Decimal, moment: datetime) -> Applied:
    """The code ``typed`` if every rule lets this buyer use it on this order, else ``CodeRefused``."""
    found = find_code(session, store.domain, typed)
    if found is None:
        raise CodeRefused(typed, "unknown_code", f"Discount code {typed!r} does not exist on this store")
    code, discount = found
    _check_active(typed, discount, moment)
    if discount.usage_limit is not None and code.usage_count >= discount.usage_limit:  # this code's uses
        raise CodeRefused(typed, "usage_limit",
                          f"Discount code {typed!r} has reached its usage limit ({discount.usage_limit})")
    _check_customer(typed, discount, customer)
    if discount.applies_once_per_customer:
        _check_once_per_customer(session, store.domain, typed, code, customer, email)
    if discount.minimum_subtotal is not None and subtotal < discount.minimum_subtotal:
        raise CodeRefused(typed, "minimum_subtotal",
                          f"Discount code {typed!r} needs a minimum subtotal of "
                          f"{payloads.money(discount.minimum_subtotal)} {store.currency} "
                          f"(this order: {payloads.money(subtotal)})")
    return Applied(typed=typed, code=code, discount=discount)


def _check_active(typed: str, discount: Discount, moment: datetime) -> None:
    status = discount.status(moment)
    if status == "ACTIVE":
        return
    if status == "SCHEDULED":
        raise CodeRefused(typed, "scheduled",
                          f"Discount code {typed!r} is not active until {payloads.timestamp(discount.starts_at)}")
    if discount.deactivated_at is not None and discount.deactivated_at <= moment:
        raise CodeRefused(typed, "deactivated", f"Discount code {typed!r} has been deactivated")
    raise CodeRefused(typed, "expired",
                      f"Discount code {typed!r} expired at {payloads.timestamp(discount.ends_at)}")


def _check_customer(typed: str, discount: Discount, customer: Customer | None) -> None:
    if discount.customer_ids is None:
        return
    if customer is None:
        raise CodeRefused(typed, "customer_restricted",
                          f"Discount code {typed!r} is only for specific customers; a guest cannot use it")
    if customer.id not in {int(c) for c in discount.customer_ids}:
        raise CodeRefused(typed, "customer_restricted",
                          f"Discount code {typed!r} is only for specific customers, not customer {customer.id}")


def _check_once_per_customer(session: Session, shop: str, typed: str, code: DiscountCode,
                             customer: Customer | None, email: str | None) -> None:
    """One use of this code per customer, tracked by the customer or, for a guest, by the checkout email.
    The rule is per redeem code: another code of the same discount is another use."""
    if customer is None and email is None:
        raise CodeRefused(typed, "once_per_customer",
                          f"Discount code {typed!r} is limited to one use per customer: "
                          "the order needs a customer or an email")
    query = select(Order).where(Order.shop == shop)
    if customer is not None:
        query = query.where(Order.customer_id == customer.id)
    else:
        query = query.where(func.lower(Order.email) == (email or "").lower())
    for order in session.scalars(query):
        if any(str(entry["code"]).upper() == code.code_key for entry in order.discount_codes):
            raise CodeRefused(typed, "once_per_customer",
                              f"Discount code {typed!r} is limited to one use per customer and this "
                              f"customer used it on order #{order.number}")


def _check_combinations(applied: Sequence[Applied]) -> None:
    """Two codes combine only when each discount's ``combinesWith`` allows the other's class."""
    for index, first in enumerate(applied):
        for second in applied[index + 1:]:
            allowed = ((first.discount.combines_with or {}).get(DISCOUNT_CLASS[second.discount.kind])
                       and (second.discount.combines_with or {}).get(DISCOUNT_CLASS[first.discount.kind]))
            if not allowed:
                raise CodeRefused(second.typed, "combination",
                                  f"Discount codes {first.typed!r} and {second.typed!r} cannot be combined")


# --- amounts ---------------------------------------------------------------------------------------

def _is_shipping(discount: Discount) -> bool:
    return discount.kind == "free_shipping" or discount.value_type == "free_shipping"


def _price(applied: Sequence[Applied], items: Sequence[LineItem], subtotal: Decimal, shipping: Decimal) -> None:
    """Set each code's amount; order discounts together never exceed the subtotal, nor shipping ones shipping."""
    left = {"order": subtotal, "shipping": shipping}
    for entry in applied:
        discount = entry.discount
        if _is_shipping(discount):
            amount, pool = shipping, "shipping"
        elif discount.value_type == "percentage":
            amount, pool = (subtotal * Decimal(discount.value)).quantize(CENT, ROUND_HALF_UP), "order"
        elif discount.applies_on_each_item:
            amount = sum((min(Decimal(discount.value), item.price) * item.quantity for item in items), Decimal(0))
            pool = "order"
        else:
            amount, pool = Decimal(discount.value), "order"
        entry.amount = min(amount.quantize(CENT, ROUND_HALF_UP), left[pool])
        left[pool] -= entry.amount


def _decimal_text(value: Decimal) -> str:
    """``discount_applications[].value`` style: ``"10.0"``, ``"12.5"``."""
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


def discount_entry(entry: Applied) -> dict[str, str]:
    """An order's ``discount_codes`` entry: the code as the buyer typed it, its amount and type."""
    discount = entry.discount
    kind = "shipping" if _is_shipping(discount) else discount.value_type
    return {"code": entry.typed, "amount": payloads.money(entry.amount), "type": kind}


def discount_application(entry: Applied) -> dict[str, Any]:
    """The REST ``discount_applications`` entry of a code."""
    discount = entry.discount
    if _is_shipping(discount):
        target, value, value_type, allocation = "shipping_line", Decimal(100), "percentage", "each"
    elif discount.value_type == "percentage":
        target, value, value_type, allocation = "line_item", Decimal(discount.value) * 100, "percentage", "across"
    else:
        target, value, value_type = "line_item", Decimal(discount.value), "fixed_amount"
        allocation = "each" if discount.applies_on_each_item else "across"
    return {"target_type": target, "type": "discount_code", "value": _decimal_text(value),
            "value_type": value_type, "allocation_method": allocation, "target_selection": "all",
            "code": entry.typed}


def _allocate(amount: Decimal, items: Sequence[LineItem], subtotal: Decimal) -> list[Decimal]:
    """Spread an order discount over the line items in proportion to their totals; the rounding
    remainder goes to the last item so that the allocations add up to the discount exactly."""
    if subtotal == 0:
        return [Decimal(0) for _ in items]
    shares = [(amount * item.total / subtotal).quantize(CENT, ROUND_DOWN) for item in items]
    shares[-1] += amount - sum(shares, Decimal(0))
    return shares


def _line_item_rows(items: Sequence[LineItem], applied: Sequence[Applied], subtotal: Decimal) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"id": State.new_id(), "title": item.title, "price": payloads.money(item.price), "quantity": item.quantity,
         "sku": item.sku, "discount_allocations": []} for item in items]
    for index, entry in enumerate(applied):
        if _is_shipping(entry.discount) or entry.amount == 0:
            continue
        for row, share in zip(rows, _allocate(entry.amount, items, subtotal), strict=True):
            if share:
                row["discount_allocations"].append({"amount": payloads.money(share),
                                                    "discount_application_index": index})
    return rows


def _build_order(store: Store, customer: Customer | None, email: str | None, items: Sequence[LineItem],
                 applied: Sequence[Applied], subtotal: Decimal, shipping: Decimal, moment: datetime) -> Order:
    total_discounts = sum((entry.amount for entry in applied), Decimal(0))
    return Order(
        id=State.new_id(), shop=store.domain, number=store.next_order_number,
        customer_id=customer.id if customer else None, email=email, currency=store.currency,
        subtotal_price=subtotal, total_discounts=total_discounts, shipping_price=shipping,
        total_price=subtotal + shipping - total_discounts,
        discount_codes=[discount_entry(entry) for entry in applied],
        discount_applications=[discount_application(entry) for entry in applied],
        line_items=_line_item_rows(items, applied, subtotal),
        token=secrets.token_hex(16), financial_status="paid",
        created_at=moment, updated_at=moment, processed_at=moment,
    )
