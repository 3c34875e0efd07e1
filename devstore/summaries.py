"""Plain-dict views of a store's rows, shared by the JSON control API and the HTML pages.

Lists are newest first. Tokens never appear in full: a person or a script checking an install needs
to know that a token exists and when it expires, not its value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from devstore import payloads
from devstore.models import (
    Customer,
    Delivery,
    Discount,
    DiscountCode,
    Installation,
    Metafield,
    Order,
    Refund,
    Store,
    WebhookSubscription,
)

ts = payloads.timestamp


def _hint(token: str | None) -> str | None:
    return None if token is None else token[:10] + "…"


def installation(row: Installation | None) -> dict[str, Any] | None:
    """The app's install state on a store, or None if it was never installed."""
    if row is None:
        return None
    return {
        "installed": row.installed,
        "client_id": row.client_id,
        "scopes": [s for s in row.scopes.split(",") if s],
        "installed_at": ts(row.installed_at),
        "access_token": _hint(row.access_token),
        "access_token_expires_at": ts(row.access_token_expires_at),
        "refresh_token": _hint(row.refresh_token),
        "refresh_token_expires_at": ts(row.refresh_token_expires_at),
    }


def store(session: Session, row: Store) -> dict[str, Any]:
    """One store: plan and bucket, faults, the app's installation and how much data it holds."""
    def count(model: Any) -> int:
        return session.scalar(select(func.count()).select_from(model).where(model.shop == row.domain)) or 0

    return {
        "domain": row.domain,
        "name": row.name,
        "email": row.email,
        "currency": row.currency,
        "plan": row.plan,
        "bucket_size": row.bucket_size,
        "restore_rate": row.restore_rate,
        "faults": row.faults or {},
        "next_order_number": row.next_order_number,
        "installation": installation(session.scalar(select(Installation).where(Installation.shop == row.domain))),
        "counts": {"customers": count(Customer), "discounts": count(Discount), "orders": count(Order),
                   "deliveries": count(Delivery), "webhook_subscriptions": count(WebhookSubscription)},
    }


def customers(session: Session, shop: str) -> list[dict[str, Any]]:
    """Customers with their tags and metafields (what the app attached)."""
    rows = session.scalars(select(Customer).where(Customer.shop == shop).order_by(Customer.created_at.desc(),
                                                                                   Customer.id)).all()
    owners = {payloads.gid("Customer", c.id): c.id for c in rows}
    fields: dict[int, list[dict[str, Any]]] = {c.id: [] for c in rows}
    if owners:
        for field in session.scalars(select(Metafield).where(Metafield.shop == shop, Metafield.owner_id.in_(owners))
                                     .order_by(Metafield.namespace, Metafield.key)):
            fields[owners[field.owner_id]].append({"namespace": field.namespace, "key": field.key,
                                                   "type": field.type, "value": field.value,
                                                   "updated_at": ts(field.updated_at)})
    return [{"id": c.id, "admin_graphql_api_id": payloads.gid("Customer", c.id), "email": c.email,
             "first_name": c.first_name, "last_name": c.last_name, "phone": c.phone, "note": c.note,
             "tags": list(c.tags or []), "metafields": fields[c.id], "created_at": ts(c.created_at)}
            for c in rows]


def discounts(session: Session, shop: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """Code discounts with their rules, status and each code's usage."""
    moment = now or datetime.now(UTC)
    rows = session.scalars(select(Discount).where(Discount.shop == shop).order_by(Discount.created_at.desc(),
                                                                                   Discount.id)).all()
    codes: dict[int, list[dict[str, Any]]] = {d.id: [] for d in rows}
    for code in session.scalars(select(DiscountCode).where(DiscountCode.shop == shop).order_by(DiscountCode.id)):
        codes.setdefault(code.discount_id, []).append({"code": code.code, "usage_count": code.usage_count})
    return [{
        "id": d.id,
        "admin_graphql_api_id": payloads.gid("DiscountCodeNode", d.id),
        "kind": d.kind,
        "title": d.title,
        "value_type": d.value_type,
        "value": str(d.value),
        "status": d.status(moment),
        "starts_at": ts(d.starts_at),
        "ends_at": ts(d.ends_at),
        "deactivated_at": ts(d.deactivated_at),
        "usage_limit": d.usage_limit,
        "applies_once_per_customer": d.applies_once_per_customer,
        "customer_ids": d.customer_ids,
        "minimum_subtotal": None if d.minimum_subtotal is None else payloads.money(d.minimum_subtotal),
        "combines_with": d.combines_with or {},
        "codes": codes[d.id],
        "created_at": ts(d.created_at),
    } for d in rows]


def refund(row: Refund) -> dict[str, Any]:
    """A refund: the amount given back, the line items and shipping it covers."""
    return {
        "id": row.id,
        "admin_graphql_api_id": payloads.gid("Refund", row.id),
        "order_id": row.order_id,
        "amount": payloads.money(row.amount),
        "line_items": [{"line_item_id": line["line_item_id"], "quantity": line["quantity"],
                        "subtotal": line["subtotal"], "restock_type": line["restock_type"]}
                       for line in row.line_items],
        "shipping": None if row.shipping is None else payloads.money(row.shipping),
        "note": row.note,
        "created_at": ts(row.created_at),
    }


def order(row: Order, refunds: Sequence[Refund] = ()) -> dict[str, Any]:
    """An order with Shopify's total names (``subtotal_price`` is after order discounts), its
    cancellation and what was refunded (``refundable``: what can still be)."""
    totals = payloads.order_totals(row)
    return {
        "id": row.id,
        "admin_graphql_api_id": payloads.gid("Order", row.id),
        "name": f"#{row.number}",
        "order_number": row.number,
        "customer_id": row.customer_id,
        "email": row.email,
        "currency": row.currency,
        "financial_status": row.financial_status,
        "line_items": [{"title": i["title"], "price": i["price"], "quantity": i["quantity"]} for i in row.line_items],
        "discount_codes": [dict(entry) for entry in row.discount_codes],
        "total_line_items_price": payloads.money(totals["total_line_items_price"]),
        "subtotal_price": payloads.money(totals["subtotal_price"]),
        "total_discounts": payloads.money(row.total_discounts),
        "shipping_price": payloads.money(row.shipping_price),
        "total_price": payloads.money(row.total_price),
        "cancelled_at": ts(row.cancelled_at),
        "cancel_reason": row.cancel_reason,
        "total_refunded": payloads.money(row.total_refunded),
        "refundable": payloads.money(row.total_price - row.total_refunded),
        "refunds": [refund(r) for r in refunds],
        "created_at": ts(row.created_at),
    }


def orders(session: Session, shop: str) -> list[dict[str, Any]]:
    """The store's orders, the latest number first, each with its refunds."""
    refunds: dict[int, list[Refund]] = {}
    for row in session.scalars(select(Refund).where(Refund.shop == shop).order_by(Refund.created_at, Refund.id)):
        refunds.setdefault(row.order_id, []).append(row)
    return [order(o, refunds.get(o.id, ()))
            for o in session.scalars(select(Order).where(Order.shop == shop).order_by(Order.number.desc()))]


def delivery(row: Delivery) -> dict[str, Any]:
    """One entry of the webhook log, with the payload as sent."""
    return {
        "id": row.id,
        "topic": row.topic,
        "uri": row.uri,
        "event_id": row.event_id,
        "webhook_id": row.webhook_id,
        "triggered_at": ts(row.triggered_at),
        "status": row.status,
        "attempts": row.attempts,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "next_attempt_at": ts(row.next_attempt_at),
        "delivered_at": ts(row.delivered_at),
        "payload": json.loads(row.payload),
    }


def deliveries(session: Session, shop: str) -> list[dict[str, Any]]:
    """The store's webhook log, newest first."""
    return [delivery(d) for d in session.scalars(select(Delivery).where(Delivery.shop == shop)
                                                 .order_by(Delivery.id.desc()))]


def subscriptions(session: Session, shop: str) -> list[dict[str, Any]]:
    """The app's webhook subscriptions on the store (created through the Admin API)."""
    return [{"id": payloads.gid("WebhookSubscription", s.id), "topic": s.topic, "uri": s.uri, "format": s.format,
             "created_at": ts(s.created_at)}
            for s in session.scalars(select(WebhookSubscription).where(WebhookSubscription.shop == shop)
                                     .order_by(WebhookSubscription.id))]
