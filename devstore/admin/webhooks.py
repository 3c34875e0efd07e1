"""Webhook subscriptions through the Admin API: create, update, delete, look up, list.

devstore delivers JSON over HTTP(S) only, the whole payload, to every subscription of a topic; a
subscription asking for more (Pub/Sub or EventBridge, XML, filters, included fields, metafield
namespaces) is refused with a user error instead of being stored and then not honoured.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from devstore.admin.context import Context, gid, parse_gid
from devstore.admin.objects import Plain, count
from devstore.admin.pagination import connection
from devstore.admin.views import Info, WebhookSubscriptionView, refuse_arguments, sort_key
from devstore.models import WebhookSubscription
from devstore.state import State

SORT_KEYS = {"CREATED_AT": lambda s: s.created_at, "ID": lambda s: s.id}
UNSUPPORTED_INPUT = ("filter", "includeFields", "metafieldNamespaces", "metafields", "name")


def _error(path: list[str], message: str) -> Plain:
    return Plain("UserError", field=path, message=message)


def _uri_problem(uri: str | None) -> str | None:
    if not uri or not uri.strip():
        return "Address can't be blank"
    parts = urlsplit(uri)
    if parts.scheme in ("pubsub", "arn"):
        return "devstore does not support Pub/Sub or EventBridge addresses: it delivers over HTTP(S)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Address is invalid"
    return None


def check_input(ctx: Context, topic: str, data: dict[str, Any], current: WebhookSubscription | None) -> list[Plain]:
    """User errors for a subscription input (``current`` is the one being updated, if any)."""
    errors: list[Plain] = []
    path = ["webhookSubscription"]
    uri = data.get("uri") if current is None or data.get("uri") is not None else current.uri
    if (problem := _uri_problem(uri)) is not None:
        errors.append(_error(path + ["uri"], problem))
    if data.get("format") == "XML":
        errors.append(_error(path + ["format"], "devstore does not support XML webhooks: it delivers JSON"))
    for name in UNSUPPORTED_INPUT:
        if data.get(name):
            errors.append(_error(path + [name], f"devstore does not support `{name}` on webhook subscriptions"))
    if not errors and _duplicate(ctx, topic, uri or "", current):
        errors.append(_error(path + ["uri"], "Address for this topic has already been taken"))
    return errors


def _duplicate(ctx: Context, topic: str, uri: str, current: WebhookSubscription | None) -> bool:
    rows = ctx.session.scalars(select(WebhookSubscription).where(WebhookSubscription.shop == ctx.shop,
                                                                 WebhookSubscription.topic == topic,
                                                                 WebhookSubscription.uri == uri))
    return any(current is None or row.id != current.id for row in rows)


def _subscription(ctx: Context, value: str) -> WebhookSubscription | None:
    resource, number = parse_gid(value)
    row = ctx.session.get(WebhookSubscription, number) if resource == "WebhookSubscription" else None
    return row if row is not None and row.shop == ctx.shop else None


def webhook_subscription_create(root: Any, info: Info, topic: str, webhookSubscription: dict[str, Any]) -> Plain:
    ctx: Context = info.context
    errors = check_input(ctx, topic, webhookSubscription, None)
    if errors:
        return Plain("WebhookSubscriptionCreatePayload", webhookSubscription=None, userErrors=errors)
    row = WebhookSubscription(id=State.new_id(), shop=ctx.shop, topic=topic, uri=webhookSubscription["uri"].strip(),
                              format="JSON", created_at=ctx.now, updated_at=ctx.now)
    ctx.session.add(row)
    ctx.session.flush()
    return Plain("WebhookSubscriptionCreatePayload", webhookSubscription=WebhookSubscriptionView(ctx, row),
                 userErrors=[])


def webhook_subscription_update(root: Any, info: Info, id: str, webhookSubscription: dict[str, Any]) -> Plain:
    """Point an existing subscription elsewhere (its topic cannot change)."""
    ctx: Context = info.context
    row = _subscription(ctx, id)
    if row is None:
        return Plain("WebhookSubscriptionUpdatePayload", webhookSubscription=None,
                     userErrors=[_error(["id"], "Webhook subscription does not exist")])
    errors = check_input(ctx, row.topic, webhookSubscription, row)
    if errors:
        return Plain("WebhookSubscriptionUpdatePayload", webhookSubscription=None, userErrors=errors)
    if webhookSubscription.get("uri") is not None:
        row.uri = webhookSubscription["uri"].strip()
    row.updated_at = ctx.now
    ctx.session.flush()
    return Plain("WebhookSubscriptionUpdatePayload", webhookSubscription=WebhookSubscriptionView(ctx, row),
                 userErrors=[])


def webhook_subscription_delete(root: Any, info: Info, id: str) -> Plain:
    ctx: Context = info.context
    row = _subscription(ctx, id)
    if row is None:
        return Plain("WebhookSubscriptionDeletePayload", deletedWebhookSubscriptionId=None,
                     userErrors=[_error(["id"], "Webhook subscription does not exist")])
    ctx.session.delete(row)
    ctx.session.flush()
    return Plain("WebhookSubscriptionDeletePayload", deletedWebhookSubscriptionId=gid("WebhookSubscription", row.id),
                 userErrors=[])


def webhook_subscription(root: Any, info: Info, id: str) -> WebhookSubscriptionView | None:
    ctx: Context = info.context
    row = _subscription(ctx, id)
    return None if row is None else WebhookSubscriptionView(ctx, row)


def _matching(ctx: Context, args: dict[str, Any]) -> list[WebhookSubscription]:
    refuse_arguments(args, "query")
    rows = ctx.session.scalars(select(WebhookSubscription).where(WebhookSubscription.shop == ctx.shop)).all()
    if args.get("topics") is not None:
        rows = [r for r in rows if r.topic in args["topics"]]
    if args.get("uri") is not None:
        rows = [r for r in rows if r.uri == args["uri"]]
    if args.get("format") is not None:
        rows = [r for r in rows if r.format == args["format"]]
    return list(rows)


def webhook_subscriptions(root: Any, info: Info, **args: Any) -> Plain:
    ctx: Context = info.context
    key = sort_key(SORT_KEYS, args.get("sortKey") or "CREATED_AT", "webhook subscriptions")
    return connection("WebhookSubscription", _matching(ctx, args), key, args,
                      lambda row: WebhookSubscriptionView(ctx, row))


def webhook_subscriptions_count(root: Any, info: Info, **args: Any) -> Plain:
    return count(len(_matching(info.context, args)), args.get("limit"))
