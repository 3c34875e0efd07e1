"""Global ids to views: ``node``/``nodes``, metafield owners and ``tagsAdd`` targets."""

from __future__ import annotations

from devstore.admin.context import Context, parse_gid
from devstore.admin.discount_views import DiscountCodeNodeView, DiscountNodeView
from devstore.admin.objects import View
from devstore.admin.redeem_codes import BulkCreationView
from devstore.admin.views import (
    CustomerView,
    MetafieldDefinitionView,
    MetafieldView,
    OrderView,
    ShopView,
    WebhookSubscriptionView,
)
from devstore.models import (
    Customer,
    Discount,
    Metafield,
    MetafieldDefinition,
    Order,
    RedeemCodeBulkCreation,
    WebhookSubscription,
)

# gid resource → (row model, view); every row model has ``shop`` so one store never sees another's rows.
RESOURCES: dict[str, tuple[type, type[View]]] = {
    "Customer": (Customer, CustomerView),
    "Order": (Order, OrderView),
    "DiscountCodeNode": (Discount, DiscountCodeNodeView),
    "DiscountNode": (Discount, DiscountNodeView),
    "WebhookSubscription": (WebhookSubscription, WebhookSubscriptionView),
    "Metafield": (Metafield, MetafieldView),
    "MetafieldDefinition": (MetafieldDefinition, MetafieldDefinitionView),
    "DiscountRedeemCodeBulkCreation": (RedeemCodeBulkCreation, BulkCreationView),
}


def row_for(ctx: Context, resource: str, number: int) -> object | None:
    """The store's row of ``resource`` with id ``number``, or None."""
    if resource not in RESOURCES:
        return None
    row = ctx.session.get(RESOURCES[resource][0], number)
    return row if row is not None and row.shop == ctx.shop else None  # type: ignore[attr-defined]


def node_view(ctx: Context, global_id: str) -> View | None:
    """The object a global id names in this store, or None (unknown, deleted, or another store's)."""
    resource, number = parse_gid(global_id)
    if resource == "Shop":
        return ShopView(ctx, ctx.store) if number == ctx.store.numeric_id else None
    row = row_for(ctx, resource, number)
    return None if row is None else RESOURCES[resource][1](ctx, row)
