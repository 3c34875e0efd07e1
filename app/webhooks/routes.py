"""``POST /webhooks``: verify, record, enqueue, answer. Never an Admin API call on this path."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
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
# What each header may hold. Shopify's topics are like "orders/paid", its ids are UUIDs, its versions
# "2026-10" or "unstable"; anything else is refused (ids, topic) or dropped (version), so that no header
# can carry a NUL, a control character or an unbounded string into the database or the logs.
TOPIC_RE = re.compile(r"[!-~]{1,100}")
HEADER_ID_RE = re.compile(rf"[!-~]{{1,{MAX_ID_LENGTH}}}")
API_VERSION_RE = re.compile(r"[0-9]{4}-[0-9]{2}|unstable")


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
        webhook_body.check_ids(delivery.topic, payload)
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
    if not TOPIC_RE.fullmatch(topic):
        _refuse_headers(topic, "missing or invalid X-Shopify-Topic header")
    if shop is None:
        _refuse_headers(topic, "missing or invalid X-Shopify-Shop-Domain header (expected {name}.myshopify.com, "
                               "the name at most 63 letters, digits or hyphens)")
    if not HEADER_ID_RE.fullmatch(event_id or "") or (webhook_id and not HEADER_ID_RE.fullmatch(webhook_id)):
        _refuse_headers(topic, f"missing or invalid X-Shopify-Event-Id / X-Shopify-Webhook-Id header "
                               f"(at most {MAX_ID_LENGTH} visible ASCII characters)")
    api_version = headers.get("X-Shopify-API-Version", "").strip()
    return inbox.Delivery(
        event_id=event_id, webhook_id=webhook_id, shop=shop, topic=topic,
        api_version=api_version if API_VERSION_RE.fullmatch(api_version) else None,
        triggered_at=_timestamp(headers.get("X-Shopify-Triggered-At")), body=body,
    )


def _refuse_headers(topic: str, reason: str) -> NoReturn:
    """Answer 400 for unusable headers; the log names the reason (and the topic, if it is one)."""
    log.warning("webhook refused", extra={"topic": topic if TOPIC_RE.fullmatch(topic) else None, "reason": reason})
    raise BadRequest(reason)


def _timestamp(value: str | None) -> datetime | None:
    """``X-Shopify-Triggered-At`` is ISO 8601; an unreadable or implausible one is dropped, not fatal."""
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        # Out of range once in UTC (year 1 at +05:00) raises OverflowError; the years bound what a delivery is.
        in_utc = stamp.astimezone(UTC) if stamp.tzinfo else None
    except (ValueError, OverflowError):
        return None
    return in_utc if in_utc is not None and 2000 <= in_utc.year < 2100 else None
