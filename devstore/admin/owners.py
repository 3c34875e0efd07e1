"""Metafield owners and namespaces: which ids can carry metafields, and what ``$app`` stands for."""

from __future__ import annotations

from devstore.admin.context import Context, gid
from devstore.models import Customer, Discount, Order

# gid resource → (MetafieldOwnerType, scope needed to write its metafields).
OWNER_TYPES: dict[str, tuple[str, str | None]] = {
    "Customer": ("CUSTOMER", "write_customers"),
    "Order": ("ORDER", "write_orders"),
    "DiscountCodeNode": ("DISCOUNT", "write_discounts"),
    "DiscountNode": ("DISCOUNT", "write_discounts"),
    "Shop": ("SHOP", None),
}


def canonical_owner(resource: str, number: int) -> str:
    """The id metafields are stored under: a discount's node ids (code node or discount node) are one owner."""
    return gid("DiscountCodeNode" if resource == "DiscountNode" else resource, number)


def owner_exists(ctx: Context, resource: str, number: int) -> bool:
    """Whether ``resource/number`` is a resource of this store that can carry metafields."""
    model = {"Customer": Customer, "Order": Order, "DiscountCodeNode": Discount, "DiscountNode": Discount}.get(resource)
    if resource == "Shop":
        return number == ctx.store.numeric_id
    if model is None:
        return False
    row = ctx.session.get(model, number)
    return row is not None and row.shop == ctx.shop


def owner_type_of(owner_id: str) -> str:
    """``MetafieldOwnerType`` of a stored owner id."""
    return OWNER_TYPES[owner_id.split("/")[3]][0]


def resolve_namespace(ctx: Context, namespace: str | None) -> str:
    """``$app`` → ``app--<client id>``, ``$app:x`` → ``app--<client id>--x``; omitted means ``$app``."""
    if namespace is None or namespace == "$app":
        return ctx.app_namespace
    if namespace.startswith("$app:"):
        return f"{ctx.app_namespace}--{namespace.removeprefix('$app:')}"
    return namespace


def foreign_app_namespace(ctx: Context, namespace: str) -> bool:
    """A namespace reserved for another app: readable and writable by that app only."""
    if not namespace.startswith("app--"):
        return False
    return namespace != ctx.app_namespace and not namespace.startswith(ctx.app_namespace + "--")
