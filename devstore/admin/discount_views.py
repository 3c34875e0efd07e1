"""Views of code discounts: ``DiscountCodeNode``/``DiscountNode`` and the discounts they hold.

A devstore ``Discount`` row is a ``DiscountCodeBasic`` (percentage or fixed amount off the whole
order) or a ``DiscountCodeFreeShipping`` (all countries, no price cap); its codes are
``DiscountRedeemCode``s. Deactivation is a timestamp devstore keeps apart from ``ends_at``; the
effective end (the earlier of the two) is what ``endsAt`` reports, as Shopify's deactivate moves the
end to "now".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from decimal import Decimal
from functools import cached_property
from typing import Any

from sqlalchemy import func, select

from devstore import payloads
from devstore.admin.context import Context, gid
from devstore.admin.objects import Plain, View, count, decimal_text, iso, money, view
from devstore.admin.pagination import connection
from devstore.admin.views import CustomerView, HasMetafields, Info, refuse_arguments, sort_key
from devstore.models import Customer, Discount, DiscountCode

CODE_SORT_KEYS = {"ID": lambda c: c.id, "CODE": lambda c: c.code_key}


def discount_object(ctx: Context, row: Discount) -> View:
    """The ``DiscountCode`` union member a discount row is."""
    if row.kind == "free_shipping":
        return DiscountCodeFreeShippingView(ctx, row)
    return DiscountCodeBasicView(ctx, row)


class _DiscountNode(HasMetafields, View):
    read_scope = "read_discounts"
    _row: Discount

    def _owner_id(self) -> str:
        # One discount, two node ids: its metafields are stored under the code node's id.
        return gid("DiscountCodeNode", self._row.id)


@view("DiscountCodeNode")
class DiscountCodeNodeView(_DiscountNode):
    def id(self, info: Info) -> str:
        return gid("DiscountCodeNode", self._row.id)

    def codeDiscount(self, info: Info) -> View:
        return discount_object(self._ctx, self._row)


@view("DiscountNode")
class DiscountNodeView(_DiscountNode):
    def id(self, info: Info) -> str:
        return gid("DiscountNode", self._row.id)

    def discount(self, info: Info) -> View:
        return discount_object(self._ctx, self._row)


def money_text(amount: Decimal, currency: str) -> str:
    """How an admin summary writes money: ``€10.00``, else ``10.00 CHF``."""
    text = payloads.money(amount)
    symbol = payloads.CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


class _CodeDiscount(View, ABC):
    """Fields common to both kinds of code discount."""

    read_scope = "read_discounts"
    _row: Discount

    @cached_property
    def _codes(self) -> list[DiscountCode]:
        return list(self._ctx.session.scalars(select(DiscountCode).where(DiscountCode.discount_id == self._row.id)
                                              .order_by(DiscountCode.id)))

    @cached_property
    def _customers(self) -> list[Customer]:
        ids = [int(i) for i in self._row.customer_ids or []]
        rows = {c.id: c for c in self._ctx.session.scalars(select(Customer).where(Customer.id.in_(ids)))}
        return [rows[i] for i in ids if i in rows and rows[i].shop == self._ctx.shop]

    def _currency(self) -> str:
        return self._ctx.store.currency

    @abstractmethod
    def _value_text(self) -> str:
        """The discount's value in words, for ``summary`` (e.g. "10% off")."""

    def title(self, info: Info) -> str:
        return self._row.title

    def status(self, info: Info) -> str:
        return self._row.status(self._ctx.now)

    def startsAt(self, info: Info) -> str | None:
        return iso(self._row.starts_at)

    def endsAt(self, info: Info) -> str | None:
        ends, stopped = self._row.ends_at, self._row.deactivated_at
        if stopped is not None and (ends is None or stopped < ends):
            return iso(stopped)
        return iso(ends)

    def createdAt(self, info: Info) -> str | None:
        return iso(self._row.created_at)

    def updatedAt(self, info: Info) -> str | None:
        return iso(self._row.updated_at)

    def usageLimit(self, info: Info) -> int | None:
        return self._row.usage_limit

    def appliesOncePerCustomer(self, info: Info) -> bool:
        return self._row.applies_once_per_customer

    def asyncUsageCount(self, info: Info) -> int:
        """The uses of all its codes together (a pool discount's codes are each used at most once)."""
        return self._ctx.session.scalar(select(func.coalesce(func.sum(DiscountCode.usage_count), 0)).where(
            DiscountCode.discount_id == self._row.id)) or 0

    def codes(self, info: Info, **args: Any) -> Plain:
        refuse_arguments(args, "query", "savedSearchId")
        key = sort_key(CODE_SORT_KEYS, args.get("sortKey") or "ID", "codes")
        return connection("DiscountRedeemCode", self._codes, key, args, redeem_code)

    def codesCount(self, info: Info) -> Plain:
        """Every redeem code it holds, its own and those added in bulk, counted without loading them."""
        return count(self._ctx.session.scalar(select(func.count()).select_from(DiscountCode).where(
            DiscountCode.discount_id == self._row.id)) or 0)

    def combinesWith(self, info: Info) -> Plain:
        flags = self._row.combines_with or {}
        return Plain("DiscountCombinesWith", orderDiscounts=bool(flags.get("orderDiscounts")),
                     productDiscounts=bool(flags.get("productDiscounts")),
                     shippingDiscounts=bool(flags.get("shippingDiscounts")),
                     productDiscountsWithTagsOnSameCartLine=None)

    def context(self, info: Info) -> Plain:
        if self._row.customer_ids is None:
            return Plain("DiscountBuyerSelectionAll", all="ALL")
        return Plain("DiscountCustomers", customers=[CustomerView(self._ctx, c) for c in self._customers])

    def customerSelection(self, info: Info) -> Plain:
        """The deprecated twin of ``context`` (still in the schema, and in Shopify's own samples)."""
        if self._row.customer_ids is None:
            return Plain("DiscountCustomerAll", allCustomers=True)
        return Plain("DiscountCustomers", customers=[CustomerView(self._ctx, c) for c in self._customers])

    def minimumRequirement(self, info: Info) -> Plain | None:
        if self._row.minimum_subtotal is None:
            return None
        return Plain("DiscountMinimumSubtotal",
                     greaterThanOrEqualToSubtotal=money(self._row.minimum_subtotal, self._currency()))

    def tags(self, info: Info) -> list[str]:
        return list(self._row.tags or [])

    def shortSummary(self, info: Info) -> str:
        return self._value_text()

    def summary(self, info: Info) -> str:
        """The admin's one-line description: value • minimum • eligibility • limits."""
        parts = [self._value_text()]
        if self._row.minimum_subtotal is not None:
            parts.append(f"Minimum purchase of {money_text(self._row.minimum_subtotal, self._currency())}")
        if self._row.customer_ids is not None:
            n = len(self._row.customer_ids)
            parts.append(f"For {n} customer{'s' if n != 1 else ''}")
        if self._row.applies_once_per_customer:
            parts.append("One use per customer")
        if self._row.usage_limit is not None:
            parts.append(f"Limit of {self._row.usage_limit} use{'s' if self._row.usage_limit != 1 else ''}")
        return " • ".join(parts)


def redeem_code(row: DiscountCode) -> Plain:
    return Plain("DiscountRedeemCode", id=gid("DiscountRedeemCode", row.id), code=row.code,
                 asyncUsageCount=row.usage_count)


@view("DiscountCodeBasic")
class DiscountCodeBasicView(_CodeDiscount):
    def _value_text(self) -> str:
        if self._row.value_type == "percentage":
            return f"{decimal_text(self._row.value * 100).removesuffix('.0')}% off entire order"
        where = "each item" if self._row.applies_on_each_item else "entire order"
        return f"{money_text(self._row.value, self._currency())} off {where}"

    def discountClasses(self, info: Info) -> list[str]:
        return ["ORDER"]  # devstore discounts apply to all items, i.e. to the order

    def discountClass(self, info: Info) -> str:
        return "ORDER"

    def customerGets(self, info: Info) -> Plain:
        if self._row.value_type == "percentage":
            value = Plain("DiscountPercentage", percentage=float(self._row.value))
        else:
            value = Plain("DiscountAmount", amount=money(self._row.value, self._currency()),
                          appliesOnEachItem=self._row.applies_on_each_item)
        return Plain("DiscountCustomerGets", value=value, items=Plain("AllDiscountItems", allItems=True),
                     appliesOnOneTimePurchase=True, appliesOnSubscription=False)


@view("DiscountCodeFreeShipping")
class DiscountCodeFreeShippingView(_CodeDiscount):
    def _value_text(self) -> str:
        return "Free shipping on all products"

    def discountClasses(self, info: Info) -> list[str]:
        return ["SHIPPING"]

    def destinationSelection(self, info: Info) -> Plain:
        return Plain("DiscountCountryAll", allCountries=True)

    def maximumShippingPrice(self, info: Info) -> None:
        return None  # devstore refuses a cap on create, so there is none

    def appliesOnOneTimePurchase(self, info: Info) -> bool:
        return True

    def appliesOnSubscription(self, info: Info) -> bool:
        return False  # devstore sells no subscriptions
