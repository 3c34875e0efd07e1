"""Views of the store's customers, orders, shop, metafields and webhook subscriptions as GraphQL objects.

Each public method answers the field it is named after from the row; fields devstore has no data
for are simply absent, so a document that asks for them is refused (see ``objects``).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo
from sqlalchemy import func, select

from devstore import payloads
from devstore.admin.context import Context, gid
from devstore.admin.objects import Plain, View, iso, money_bag, view
from devstore.admin.owners import owner_type_of, resolve_namespace
from devstore.admin.pagination import Key, connection, sort_value
from devstore.admin.search import order_filter
from devstore.models import Customer, Metafield, MetafieldDefinition, Order, WebhookSubscription

Info = GraphQLResolveInfo

ORDER_SORT_KEYS: dict[str, Callable[[Order], Any]] = {
    "PROCESSED_AT": lambda o: o.processed_at, "CREATED_AT": lambda o: o.created_at,
    "UPDATED_AT": lambda o: o.updated_at, "ID": lambda o: o.id, "ORDER_NUMBER": lambda o: o.number,
    "TOTAL_PRICE": lambda o: o.total_price,
}
CUSTOMER_SORT_KEYS: dict[str, Callable[[Customer], Any]] = {
    "ID": lambda c: c.id, "CREATED_AT": lambda c: c.created_at, "UPDATED_AT": lambda c: c.updated_at,
}
METAFIELD_CATEGORIES = {
    "single_line_text_field": "TEXT", "multi_line_text_field": "TEXT", "rich_text_field": "TEXT",
    "number_integer": "NUMBER", "number_decimal": "NUMBER", "boolean": "TRUE_FALSE", "date": "DATE_TIME",
    "date_time": "DATE_TIME", "json": "JSON", "url": "URL", "link": "URL", "color": "COLOR", "rating": "RATING",
    "money": "MONEY", "dimension": "MEASUREMENT", "volume": "MEASUREMENT", "weight": "MEASUREMENT", "id": "TEXT",
}


def sort_key(sort_keys: dict[str, Callable[[Any], Any]], name: str, what: str) -> Callable[[Any], Key]:
    """The pagination key (value, id) for a ``sortKey`` devstore can order by."""
    if name not in sort_keys:
        raise GraphQLError(f"devstore cannot sort {what} by {name} (it can by {', '.join(sort_keys)})",
                           extensions={"code": "DEVSTORE_UNSUPPORTED"})
    value = sort_keys[name]
    return lambda row: (sort_value(value(row)), row.id)


def refuse_arguments(args: dict[str, Any], *names: str) -> None:
    """Arguments Shopify accepts that devstore cannot honour: refuse rather than ignore them."""
    for name in names:
        if args.get(name) is not None:
            raise GraphQLError(f"devstore does not support the `{name}` argument here",
                               extensions={"code": "DEVSTORE_UNSUPPORTED"})


def metafield_category(type_name: str) -> str:
    base = type_name.removeprefix("list.")
    return "REFERENCE" if base.endswith("_reference") else METAFIELD_CATEGORIES.get(base, "TEXT")


def order_connection(ctx: Context, args: dict[str, Any], customer_id: int | None = None) -> Plain:
    """Orders matching ``args["query"]`` (Shopify's search syntax), one page of them."""
    refuse_arguments(args, "savedSearchId")
    key = sort_key(ORDER_SORT_KEYS, args.get("sortKey") or "ID", "orders")
    keep = order_filter(args.get("query"))
    statement = select(Order).where(Order.shop == ctx.shop)
    if customer_id is not None:
        statement = statement.where(Order.customer_id == customer_id)
    rows = [o for o in ctx.session.scalars(statement) if keep(o)]
    return connection("Order", rows, key, args, lambda o: OrderView(ctx, o))


def count_orders(ctx: Context, query: str | None) -> int:
    keep = order_filter(query)
    return sum(1 for o in ctx.session.scalars(select(Order).where(Order.shop == ctx.shop)) if keep(o))


# --- metafields on any owner ------------------------------------------------------------------------

class HasMetafields(ABC):
    """``metafield``/``metafields`` for a view whose owner id is ``_owner_id()``."""

    _ctx: Context

    @abstractmethod
    def _owner_id(self) -> str:
        """The owner's GID, e.g. ``gid://shopify/Customer/1``."""

    def _metafields(self) -> Sequence[Metafield]:
        return self._ctx.session.scalars(select(Metafield).where(Metafield.shop == self._ctx.shop,
                                                                 Metafield.owner_id == self._owner_id())).all()

    def metafield(self, info: Info, key: str, namespace: str | None = None) -> MetafieldView | None:
        wanted = resolve_namespace(self._ctx, namespace)
        row = next((m for m in self._metafields() if m.namespace == wanted and m.key == key), None)
        return None if row is None else MetafieldView(self._ctx, row)

    def metafields(self, info: Info, **args: Any) -> Plain:
        rows = list(self._metafields())
        if args.get("namespace") is not None:
            wanted = resolve_namespace(self._ctx, args["namespace"])
            rows = [m for m in rows if m.namespace == wanted]
        if args.get("keys") is not None:
            keys = {tuple(k.rsplit(".", 1)) for k in args["keys"]}
            rows = [m for m in rows if (m.namespace, m.key) in keys]
        return connection("Metafield", rows, lambda m: (m.id, m.id), args, lambda m: MetafieldView(self._ctx, m))


@view("Metafield")
class MetafieldView(View):
    _row: Metafield

    def id(self, info: Info) -> str:
        return gid("Metafield", self._row.id)

    def legacyResourceId(self, info: Info) -> int:
        return self._row.id

    def namespace(self, info: Info) -> str:
        return self._row.namespace

    def key(self, info: Info) -> str:
        return self._row.key

    def type(self, info: Info) -> str:
        return self._row.type

    def value(self, info: Info) -> str:
        return self._row.value

    def compareDigest(self, info: Info) -> str:
        return compare_digest(self._row)

    def ownerType(self, info: Info) -> str:
        return owner_type_of(self._row.owner_id)

    def owner(self, info: Info) -> View | None:
        from devstore.admin.nodes import node_view  # nodes imports every view module, this one included
        return node_view(self._ctx, self._row.owner_id)

    def definition(self, info: Info) -> MetafieldDefinitionView | None:
        row = self._ctx.session.scalar(select(MetafieldDefinition).where(
            MetafieldDefinition.shop == self._ctx.shop,
            MetafieldDefinition.owner_type == owner_type_of(self._row.owner_id),
            MetafieldDefinition.namespace == self._row.namespace, MetafieldDefinition.key == self._row.key))
        return None if row is None else MetafieldDefinitionView(self._ctx, row)

    def createdAt(self, info: Info) -> str | None:
        return iso(self._row.created_at)

    def updatedAt(self, info: Info) -> str | None:
        return iso(self._row.updated_at)


def compare_digest(row: Metafield) -> str:
    """The optimistic-concurrency token of a metafield: changes whenever its type or value does."""
    return hashlib.sha256(f"{row.type}\x00{row.value}".encode()).hexdigest()


@view("MetafieldDefinition")
class MetafieldDefinitionView(View):
    _row: MetafieldDefinition

    def id(self, info: Info) -> str:
        return gid("MetafieldDefinition", self._row.id)

    def name(self, info: Info) -> str:
        return self._row.name

    def namespace(self, info: Info) -> str:
        return self._row.namespace

    def key(self, info: Info) -> str:
        return self._row.key

    def description(self, info: Info) -> str | None:
        return self._row.description

    def ownerType(self, info: Info) -> str:
        return self._row.owner_type

    def pinnedPosition(self, info: Info) -> int | None:
        return self._row.pinned_position

    def type(self, info: Info) -> Plain:
        return Plain("MetafieldDefinitionType", name=self._row.type, category=metafield_category(self._row.type))

    def access(self, info: Info) -> Plain:
        access = self._row.access or {}
        return Plain("MetafieldAccess", admin=access.get("admin"), storefront=access.get("storefront"),
                     customerAccount=access.get("customerAccount") or "NONE")


# --- customers, orders, the shop --------------------------------------------------------------------

@view("Customer")
class CustomerView(HasMetafields, View):
    read_scope = "read_customers"
    _row: Customer

    def _owner_id(self) -> str:
        return gid("Customer", self._row.id)

    def id(self, info: Info) -> str:
        return self._owner_id()

    def legacyResourceId(self, info: Info) -> int:
        return self._row.id

    def email(self, info: Info) -> str | None:
        return self._row.email

    def firstName(self, info: Info) -> str | None:
        return self._row.first_name

    def lastName(self, info: Info) -> str | None:
        return self._row.last_name

    def displayName(self, info: Info) -> str:
        """Shopify's rule: the full name, else the email, else the phone."""
        name = " ".join(p for p in (self._row.first_name, self._row.last_name) if p)
        return name or self._row.email or self._row.phone or ""

    def phone(self, info: Info) -> str | None:
        return self._row.phone

    def note(self, info: Info) -> str | None:
        return self._row.note

    def tags(self, info: Info) -> list[str]:
        return list(self._row.tags or [])

    def numberOfOrders(self, info: Info) -> int:
        return self._ctx.session.scalar(select(func.count()).select_from(Order).where(
            Order.shop == self._ctx.shop, Order.customer_id == self._row.id)) or 0

    def orders(self, info: Info, **args: Any) -> Plain:
        return order_connection(self._ctx, args, customer_id=self._row.id)

    def lastOrder(self, info: Info) -> OrderView | None:
        row = self._ctx.session.scalar(select(Order).where(Order.shop == self._ctx.shop,
                                                           Order.customer_id == self._row.id)
                                       .order_by(Order.created_at.desc(), Order.id.desc()).limit(1))
        return None if row is None else OrderView(self._ctx, row)

    def createdAt(self, info: Info) -> str | None:
        return iso(self._row.created_at)

    def updatedAt(self, info: Info) -> str | None:
        return iso(self._row.updated_at)


FINANCIAL_STATUS = {"pending": "PENDING", "authorized": "AUTHORIZED", "partially_paid": "PARTIALLY_PAID",
                    "paid": "PAID", "partially_refunded": "PARTIALLY_REFUNDED", "refunded": "REFUNDED",
                    "voided": "VOIDED", "expired": "EXPIRED"}


@view("Order")
class OrderView(HasMetafields, View):
    read_scope = "read_orders"
    _row: Order

    def _owner_id(self) -> str:
        return gid("Order", self._row.id)

    def _money(self, amount: Any) -> Plain:
        return money_bag(amount, self._row.currency)

    def id(self, info: Info) -> str:
        return self._owner_id()

    def legacyResourceId(self, info: Info) -> int:
        return self._row.id

    def name(self, info: Info) -> str:
        return f"#{self._row.number}"

    def email(self, info: Info) -> str | None:
        return self._row.email

    def customer(self, info: Info) -> CustomerView | None:
        row = None if self._row.customer_id is None else self._ctx.session.get(Customer, self._row.customer_id)
        return None if row is None else CustomerView(self._ctx, row)

    def currencyCode(self, info: Info) -> str:
        return self._row.currency

    def presentmentCurrencyCode(self, info: Info) -> str:
        return self._row.currency

    def discountCode(self, info: Info) -> str | None:
        return self._row.discount_codes[0]["code"] if self._row.discount_codes else None

    def discountCodes(self, info: Info) -> list[str]:
        return [str(entry["code"]) for entry in self._row.discount_codes]

    def displayFinancialStatus(self, info: Info) -> str | None:
        return FINANCIAL_STATUS.get(self._row.financial_status)

    def fullyPaid(self, info: Info) -> bool:
        return self._row.financial_status in ("paid", "partially_refunded", "refunded")

    def unpaid(self, info: Info) -> bool:
        return self._row.financial_status in ("pending", "authorized", "expired", "voided")

    def cancelledAt(self, info: Info) -> str | None:
        return iso(self._row.cancelled_at)

    def refundable(self, info: Info) -> bool:
        """Whether something is left to refund (devstore orders are paid at once and never fulfilled)."""
        return self._row.total_refunded < self._row.total_price

    def totalRefundedSet(self, info: Info) -> Plain:
        return self._money(self._row.total_refunded)

    def currentTotalPriceSet(self, info: Info) -> Plain:
        """The total less refunds, as Shopify's current total reflects them."""
        return self._money(self._row.total_price - self._row.total_refunded)

    def subtotalLineItemsQuantity(self, info: Info) -> int:
        return sum(int(item.get("quantity", 0)) for item in self._row.line_items)

    def subtotalPriceSet(self, info: Info) -> Plain:
        """After order discounts, before shipping (Shopify's ``subtotalPriceSet``)."""
        return self._money(payloads.order_totals(self._row)["subtotal_price"])

    def totalDiscountsSet(self, info: Info) -> Plain:
        return self._money(self._row.total_discounts)

    def totalShippingPriceSet(self, info: Info) -> Plain:
        return self._money(self._row.shipping_price)

    def totalPriceSet(self, info: Info) -> Plain:
        return self._money(self._row.total_price)

    def tags(self, info: Info) -> list[str]:
        return list(self._row.tags or [])

    def createdAt(self, info: Info) -> str | None:
        return iso(self._row.created_at)

    def updatedAt(self, info: Info) -> str | None:
        return iso(self._row.updated_at)

    def processedAt(self, info: Info) -> str | None:
        return iso(self._row.processed_at)


@view("Shop")
class ShopView(HasMetafields, View):
    def _owner_id(self) -> str:
        return gid("Shop", self._ctx.store.numeric_id)

    def id(self, info: Info) -> str:
        return self._owner_id()

    def name(self, info: Info) -> str:
        return self._ctx.store.name

    def email(self, info: Info) -> str:
        return self._ctx.store.email

    def contactEmail(self, info: Info) -> str:
        return self._ctx.store.email

    def myshopifyDomain(self, info: Info) -> str:
        return self._ctx.store.domain

    def currencyCode(self, info: Info) -> str:
        return self._ctx.store.currency

    def enabledPresentmentCurrencies(self, info: Info) -> list[str]:
        return [self._ctx.store.currency]

    def ianaTimezone(self, info: Info) -> str:
        return str(payloads.STORE_ADDRESS["iana_timezone"])  # every pretend store is in Berlin

    def orderNumberFormatPrefix(self, info: Info) -> str:
        return "#"  # orders are named #1001, #1002, …

    def orderNumberFormatSuffix(self, info: Info) -> str:
        return ""


def customer_connection(ctx: Context, args: dict[str, Any]) -> Plain:
    refuse_arguments(args, "query")
    key = sort_key(CUSTOMER_SORT_KEYS, args.get("sortKey") or "ID", "customers")
    rows = ctx.session.scalars(select(Customer).where(Customer.shop == ctx.shop)).all()
    return connection("Customer", rows, key, args, lambda c: CustomerView(ctx, c))


def count_customers(ctx: Context) -> int:
    return ctx.session.scalar(select(func.count()).select_from(Customer).where(Customer.shop == ctx.shop)) or 0


# --- webhook subscriptions --------------------------------------------------------------------------

@view("WebhookSubscription")
class WebhookSubscriptionView(View):
    _row: WebhookSubscription

    def id(self, info: Info) -> str:
        return gid("WebhookSubscription", self._row.id)

    def legacyResourceId(self, info: Info) -> int:
        return self._row.id

    def topic(self, info: Info) -> str:
        return self._row.topic

    def uri(self, info: Info) -> str:
        return self._row.uri

    def format(self, info: Info) -> str:
        return self._row.format

    # devstore refuses filters, included fields and metafield namespaces on create, so these are exact.
    def filter(self, info: Info) -> None:
        return None

    def includeFields(self, info: Info) -> list[str]:
        return []

    def metafieldNamespaces(self, info: Info) -> list[str]:
        return []

    def metafields(self, info: Info) -> list[Plain]:
        return []

    def name(self, info: Info) -> None:
        return None

    def createdAt(self, info: Info) -> str | None:
        return iso(self._row.created_at)

    def updatedAt(self, info: Info) -> str | None:
        return iso(self._row.updated_at)
