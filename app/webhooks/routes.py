"""``POST /webhooks``: verify, record, enqueue, answer. Never an Admin API call on this path."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import NoReturn

from flask import Blueprint, Request, request

from app import inbox
from app.errors import BadRequest
from app.queues import enqueue_event
from app.shopify import webhooks as webhook_body
from app.shopify.verify import valid_shop_domain, verify_webhook
from app.web import rt

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)

MAX_ID_LENGTH = 255


@bp.post("/webhooks")
def receive():  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    # The signature covers the raw bytes: read them before anything parses the body.
    body = request.get_data(cache=False)
    if not verify_webhook(body, request.headers.get("X-Shopify-Hmac-Sha256"), rt().settings.api_secrets):
        log.warning("webhook rejected: bad or missing signature",
                    extra={"topic": request.headers.get("X-Shopify-Topic", "")[:100]})
        return "invalid webhook signature\n", 401, {"Content-Type": "text/plain; charset=utf-8"}

    delivery = _delivery(request, body)
    try:
        payload = webhook_body.parse(body)
        webhook_body.check_shop(delivery.topic, payload, delivery.shop)
    except webhook_body.RefusedBody as exc:
        _refuse(delivery, str(exc))
    with rt().db.engine.begin() as connection:
        outcome = inbox.record(connection, delivery)
    if outcome is inbox.Outcome.QUEUE:
        enqueue_event(rt().redis, delivery.event_id, delivery.topic, delivery.shop)
    context = {"shop": delivery.shop, "topic": delivery.topic, "event_id": delivery.event_id,
               "webhook_id": delivery.webhook_id, "status": outcome.value,
               "duration_ms": round((time.perf_counter() - started) * 1000, 2)}
    if outcome is inbox.Outcome.SHOP_INSTALLED:
        log.warning("shop/redact not recorded: the shop has OnceCode installed", extra=context)
    elif outcome in (inbox.Outcome.TOPIC_NOT_HANDLED, inbox.Outcome.UNKNOWN_SHOP):
        log.info("webhook not recorded: " + outcome.value, extra=context)
    else:
        log.info("webhook received", extra=context)
    return "", 200


def _refuse(delivery: inbox.Delivery, reason: str) -> NoReturn:
    """Answer 400 naming ``reason``; log it with the delivery's headers (never its body)."""
    log.warning("webhook refused", extra={"shop": delivery.shop, "topic": delivery.topic,
                                          "event_id": delivery.event_id, "webhook_id": delivery.webhook_id,
                                          "reason": reason})
    raise BadRequest(reason)


def _delivery(req: Request, body: bytes) -> inbox.Delivery:
    headers = req.headers
    topic = headers.get("X-Shopify-Topic", "").strip()
    shop = valid_shop_domain(headers.get("X-Shopify-Shop-Domain", "").strip())
    webhook_id = headers.get("X-Shopify-Webhook-Id", "").strip() or None
    event_id = headers.get("X-Shopify-Event-Id", "").strip() or webhook_id
    if not topic or len(topic) > 100:
        raise BadRequest("missing or invalid X-Shopify-Topic header")
    if shop is None:
        raise BadRequest("missing or invalid X-Shopify-Shop-Domain header (expected {name}.myshopify.com)")
    if not event_id or len(event_id) > MAX_ID_LENGTH or (webhook_id and len(webhook_id) > MAX_ID_LENGTH):
        raise BadRequest("missing or invalid X-Shopify-Event-Id / X-Shopify-Webhook-Id header")
    return inbox.Delivery(
        event_id=event_id, webhook_id=webhook_id, shop=shop, topic=topic,
        api_version=headers.get("X-Shopify-API-Version", "").strip()[:20] or None,
        triggered_at=_timestamp(headers.get("X-Shopify-Triggered-At")), body=body,
    )


def _timestamp(value: str | None) -> datetime | None:
    """``X-Shopify-Triggered-At`` is ISO 8601; an unreadable one is dropped, not fatal."""
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else None
