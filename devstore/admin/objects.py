"""What devstore hands to graphql-core: views over rows and plain value objects, and which fields each backs.

A field devstore cannot back with data must never answer made-up data. So every output type devstore
returns is declared here with exactly the fields it implements:

- a ``View`` wraps a row; each public method is the resolver of the field it is named after
  (graphql-core's default resolver calls it with ``info`` and the field's arguments);
- a ``Plain`` is a value built whole (money, a page of a connection, a mutation payload); its type's
  fields are listed in ``PLAIN_TYPES`` and checked when it is built.

``implemented(type_name, field)`` answers from these declarations; a document that selects anything
else is refused before it runs (see ``devstore.admin.checks``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from devstore.admin.context import Context

V = TypeVar("V", bound="type[View]")

VIEWS: dict[str, type[View]] = {}


class View:
    """A row seen as one GraphQL object type; public methods are its fields."""

    typename: ClassVar[str] = ""
    # The access scope a caller needs to read this type at all (write implies read), as Shopify checks it.
    read_scope: ClassVar[str | None] = None

    def __init__(self, ctx: Context, row: Any) -> None:
        self._ctx = ctx
        self._row = row


def view(typename: str) -> Callable[[V], V]:
    """Register a ``View`` class as the implementation of the GraphQL type ``typename``."""
    def register(cls: V) -> V:
        cls.typename = typename
        VIEWS[typename] = cls
        return cls
    return register


def view_fields(cls: type[View]) -> frozenset[str]:
    """The GraphQL fields a view class implements: its public methods, inherited ones included."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (View, object):
            continue
        names.update(name for name, member in vars(klass).items()
                     if not name.startswith("_") and callable(member))
    return frozenset(names)


def _connection(node: str) -> dict[str, frozenset[str]]:
    return {f"{node}Connection": frozenset({"edges", "nodes", "pageInfo"}),
            f"{node}Edge": frozenset({"cursor", "node"})}


# Value types: built whole, with exactly these fields (a subset of the schema's where devstore has no data).
PLAIN_TYPES: dict[str, frozenset[str]] = {
    "MoneyV2": frozenset({"amount", "currencyCode"}),
    "MoneyBag": frozenset({"shopMoney", "presentmentMoney"}),
    "Count": frozenset({"count", "precision"}),
    "PageInfo": frozenset({"hasNextPage", "hasPreviousPage", "startCursor", "endCursor"}),
    "UserError": frozenset({"field", "message"}),
    "DiscountUserError": frozenset({"code", "extraInfo", "field", "message"}),
    "MetafieldsSetUserError": frozenset({"code", "elementIndex", "field", "message"}),
    "MetafieldDefinitionCreateUserError": frozenset({"code", "elementIndex", "elementKey", "field", "message"}),
    "DiscountRedeemCode": frozenset({"asyncUsageCount", "code", "id"}),
    "DiscountCombinesWith": frozenset({"orderDiscounts", "productDiscounts", "shippingDiscounts",
                                       "productDiscountsWithTagsOnSameCartLine"}),
    "DiscountCustomerGets": frozenset({"appliesOnOneTimePurchase", "appliesOnSubscription", "items", "value"}),
    "AllDiscountItems": frozenset({"allItems"}),
    "DiscountPercentage": frozenset({"percentage"}),
    "DiscountAmount": frozenset({"amount", "appliesOnEachItem"}),
    "DiscountMinimumSubtotal": frozenset({"greaterThanOrEqualToSubtotal"}),
    "DiscountBuyerSelectionAll": frozenset({"all"}),
    "DiscountCustomers": frozenset({"customers"}),
    "DiscountCustomerAll": frozenset({"allCustomers"}),
    "DiscountCountryAll": frozenset({"allCountries"}),
    "MetafieldAccess": frozenset({"admin", "customerAccount", "storefront"}),
    "MetafieldDefinitionType": frozenset({"category", "name"}),
    "WebhookSubscriptionMetafieldIdentifier": frozenset({"key", "namespace"}),
    # Mutation payloads.
    "DiscountCodeBasicCreatePayload": frozenset({"codeDiscountNode", "userErrors"}),
    "DiscountCodeFreeShippingCreatePayload": frozenset({"codeDiscountNode", "userErrors"}),
    "DiscountCodeActivatePayload": frozenset({"codeDiscountNode", "userErrors"}),
    "DiscountCodeDeactivatePayload": frozenset({"codeDiscountNode", "userErrors"}),
    "DiscountCodeDeletePayload": frozenset({"deletedCodeDiscountId", "userErrors"}),
    "MetafieldsSetPayload": frozenset({"metafields", "userErrors"}),
    "MetafieldDefinitionCreatePayload": frozenset({"createdDefinition", "userErrors"}),
    "MetafieldsDeletePayload": frozenset({"deletedMetafields", "userErrors"}),
    "MetafieldIdentifier": frozenset({"key", "namespace", "ownerId"}),
    "DiscountCodeBulkDeletePayload": frozenset({"job", "userErrors"}),
    "DiscountRedeemCodeBulkAddPayload": frozenset({"bulkCreation", "userErrors"}),
    "DiscountCodeRedeemCodeBulkDeletePayload": frozenset({"job", "userErrors"}),
    "DiscountRedeemCodeBulkCreationCode": frozenset({"code", "discountRedeemCode", "errors"}),
    # An asynchronous job; ``query`` (the objects it changed) is not implemented.
    "Job": frozenset({"done", "id"}),
    "TagsAddPayload": frozenset({"node", "userErrors"}),
    "TagsRemovePayload": frozenset({"node", "userErrors"}),
    "WebhookSubscriptionCreatePayload": frozenset({"webhookSubscription", "userErrors"}),
    "WebhookSubscriptionUpdatePayload": frozenset({"webhookSubscription", "userErrors"}),
    "WebhookSubscriptionDeletePayload": frozenset({"deletedWebhookSubscriptionId", "userErrors"}),
    **_connection("Customer"),
    **_connection("Order"),
    **_connection("Metafield"),
    **_connection("DiscountRedeemCode"),
    **_connection("DiscountRedeemCodeBulkCreationCode"),
    **_connection("WebhookSubscription"),
}


class Plain(dict[str, Any]):
    """A value object of one GraphQL type; callables among its values are resolved lazily."""

    def __init__(self, typename: str, **fields: Any) -> None:
        expected = PLAIN_TYPES[typename]
        if frozenset(fields) != expected:
            # A programming error, caught by the tests: the declaration and the builder disagree.
            raise TypeError(f"{typename} built with {sorted(fields)}, declared {sorted(expected)}")
        super().__init__(fields)
        self.typename = typename


def implemented(typename: str, field: str) -> bool:
    """Whether devstore can answer ``typename.field`` with real data."""
    if field.startswith("__"):
        return True
    if typename in VIEWS:
        return field in view_fields(VIEWS[typename])
    return field in PLAIN_TYPES.get(typename, frozenset())


def returnable(typename: str) -> bool:
    """Whether devstore ever returns an object of this type."""
    return typename in VIEWS or typename in PLAIN_TYPES


# --- scalar renderings shared by views and payloads ---------------------------------------------------

def iso(moment: datetime | None) -> str | None:
    """Shopify's ``DateTime`` rendering: UTC, to the second, with ``Z``."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decimal_text(value: Decimal | int | float | str) -> str:
    """Shopify's ``Decimal`` rendering: ``"10.0"``, ``"12.5"``, ``"0.0"``."""
    text = format(Decimal(str(value)).normalize(), "f")
    return text if "." in text else text + ".0"


def money(amount: Decimal, currency: str) -> Plain:
    return Plain("MoneyV2", amount=Decimal(amount), currencyCode=currency)


def money_bag(amount: Decimal, currency: str) -> Plain:
    """A ``MoneyBag``: devstore stores have one currency, so shop and presentment money agree."""
    return Plain("MoneyBag", shopMoney=money(amount, currency), presentmentMoney=money(amount, currency))


def count(value: int, limit: int | None = None) -> Plain:
    """A ``Count``, capped at ``limit`` with precision ``AT_LEAST`` as Shopify's count fields are."""
    if limit is not None and value > limit:
        return Plain("Count", count=limit, precision="AT_LEAST")
    return Plain("Count", count=value, precision="EXACT")
