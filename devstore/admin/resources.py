"""Root fields over the store's resources: look-ups, lists and counts, and ``tagsAdd``/``tagsRemove``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from devstore.admin.context import Context, access_denied, id_of, parse_gid
from devstore.admin.discount_views import DiscountCodeNodeView, DiscountNodeView
from devstore.admin.nodes import node_view, row_for
from devstore.admin.objects import Plain, View, count
from devstore.admin.views import (
    CustomerView,
    Info,
    OrderView,
    ShopView,
    count_customers,
    count_orders,
    customer_connection,
    order_connection,
    refuse_arguments,
)
from devstore.models import Discount, DiscountCode

TAGGABLE = {"Customer": "write_customers", "Order": "write_orders"}


def _context(info: Info) -> Context:
    return info.context


def shop(root: Any, info: Info) -> ShopView:
    ctx = _context(info)
    return ShopView(ctx, ctx.store)


def customer(root: Any, info: Info, id: str) -> CustomerView | None:
    ctx = _context(info)
    number = id_of(id, "Customer")
    row = None if number is None else row_for(ctx, "Customer", number)
    return None if row is None else CustomerView(ctx, row)


def customers(root: Any, info: Info, **args: Any) -> Plain:
    return customer_connection(_context(info), args)


def customers_count(root: Any, info: Info, **args: Any) -> Plain:
    refuse_arguments(args, "query")
    return count(count_customers(_context(info)), args.get("limit"))


def order(root: Any, info: Info, id: str) -> OrderView | None:
    ctx = _context(info)
    number = id_of(id, "Order")
    row = None if number is None else row_for(ctx, "Order", number)
    return None if row is None else OrderView(ctx, row)


def orders(root: Any, info: Info, **args: Any) -> Plain:
    return order_connection(_context(info), args)


def orders_count(root: Any, info: Info, **args: Any) -> Plain:
    refuse_arguments(args, "savedSearchId")
    return count(count_orders(_context(info), args.get("query")), args.get("limit"))


def node(root: Any, info: Info, id: str) -> View | None:
    return node_view(_context(info), id)


def nodes(root: Any, info: Info, ids: list[str]) -> list[View | None]:
    return [node_view(_context(info), value) for value in ids]


def _discount(ctx: Context, id: str, *types: str) -> Discount | None:
    number = id_of(id, *types)
    row = None if number is None else ctx.session.get(Discount, number)
    return row if row is not None and row.shop == ctx.shop else None


def code_discount_node(root: Any, info: Info, id: str) -> DiscountCodeNodeView | None:
    ctx = _context(info)
    row = _discount(ctx, id, "DiscountCodeNode")
    return None if row is None else DiscountCodeNodeView(ctx, row)


def discount_node(root: Any, info: Info, id: str) -> DiscountNodeView | None:
    """A discount by its ``DiscountNode`` id (its ``DiscountCodeNode`` id names the same discount)."""
    ctx = _context(info)
    row = _discount(ctx, id, "DiscountNode", "DiscountCodeNode")
    return None if row is None else DiscountNodeView(ctx, row)


def code_discount_node_by_code(root: Any, info: Info, code: str) -> DiscountCodeNodeView | None:
    """Case-insensitive, as on Shopify."""
    ctx = _context(info)
    discount_id = ctx.session.scalar(select(DiscountCode.discount_id).where(
        DiscountCode.shop == ctx.shop, DiscountCode.code_key == code.strip().upper()))
    row = None if discount_id is None else ctx.session.get(Discount, discount_id)
    return None if row is None else DiscountCodeNodeView(ctx, row)


# --- tags -------------------------------------------------------------------------------------------

def split_tags(tags: list[str]) -> list[str]:
    """Shopify accepts ``["a", "b"]`` and ``"a, b"`` alike: every comma separates two tags."""
    return [tag.strip() for value in tags for tag in value.split(",") if tag.strip()]


def _taggable(ctx: Context, id: str, field: str) -> tuple[Any, list[Plain]]:
    resource, number = parse_gid(id)
    if resource in TAGGABLE and not ctx.has_scope(TAGGABLE[resource]):
        raise access_denied(field, TAGGABLE[resource])
    row = row_for(ctx, resource, number) if resource in TAGGABLE else None
    if row is None:
        # devstore has no products, draft orders or articles, so those never exist either.
        return None, [Plain("UserError", field=["id"], message=f"{resource} does not exist")]
    return row, []


def tags_add(root: Any, info: Info, id: str, tags: list[str]) -> Plain:
    """Add tags, keeping the ones already there; tags compare case-insensitively."""
    ctx = _context(info)
    row, errors = _taggable(ctx, id, "tagsAdd")
    if row is not None:
        current = list(row.tags or [])
        known = {t.lower() for t in current}
        for tag in split_tags(tags):
            if tag.lower() not in known:
                current.append(tag)
                known.add(tag.lower())
        row.tags, row.updated_at = current, ctx.now  # a new list, so SQLAlchemy sees the change
    return Plain("TagsAddPayload", node=None if row is None else node_view(ctx, id), userErrors=errors)


def tags_remove(root: Any, info: Info, id: str, tags: list[str]) -> Plain:
    ctx = _context(info)
    row, errors = _taggable(ctx, id, "tagsRemove")
    if row is not None:
        gone = {t.lower() for t in split_tags(tags)}
        row.tags, row.updated_at = [t for t in row.tags or [] if t.lower() not in gone], ctx.now
    return Plain("TagsRemovePayload", node=None if row is None else node_view(ctx, id), userErrors=errors)
