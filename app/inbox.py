"""The webhook inbox: record each verified delivery once, then let the queue (or the sweep) run it.

The web process calls ``record()`` on the hot path: one indexed look-up and one insert. Whatever
happens to Redis afterwards, the row is the promise that the event will be handled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from redis import Redis
from sqlalchemy import Connection, bindparam, delete, or_, select
from sqlalchemy.orm import Session

from app.db import insert_ignoring_conflict, utcnow
from app.errors import Conflict, NotFound
from app.models import Shop, WebhookEvent
from app.queues import (
    WEBHOOK_JOBS,
    enqueue_event,
    enqueue_setup,
    job_id_for_event,
    requeue,
    resubscribe_job_id,
    topics_key,
)

log = logging.getLogger(__name__)


class Outcome(Enum):
    QUEUE = "queue"  # new event for a handled topic of a known shop: recorded, enqueue it
    DUPLICATE = "duplicate"  # seen before (retry or second subscription): nothing to do
    TOPIC_NOT_HANDLED = "topic not handled"  # not recorded: nothing of ours to do
    UNKNOWN_SHOP = "unknown shop"  # not recorded: nothing held for it (never installed, or erased)
    SHOP_INSTALLED = "shop installed"  # shop/redact for a shop that has the app installed: not recorded


@dataclass(frozen=True)
class Delivery:
    event_id: str
    webhook_id: str | None
    shop: str
    topic: str
    api_version: str | None
    triggered_at: datetime | None
    body: bytes  # checked already: a UTF-8 JSON object (``app.shopify.webhooks.parse``)


_SHOP = select(Shop.id, Shop.uninstalled_at.is_(None) & Shop.access_token.is_not(None)).where(
    Shop.domain == bindparam("domain"))


def record(connection: Connection, delivery: Delivery) -> Outcome:
    """Record one verified, checked delivery and say what the caller should do with it.

    Only events we will act on are kept: a topic we do not handle or a shop we do not know is not
    recorded at all (its body may carry personal data we have no use for). Runs on the webhook hot
    path, so it uses prepared Core statements on one connection (the caller's transaction) rather
    than an ORM session: two statements, one round trip each.
    """
    if delivery.topic not in WEBHOOK_JOBS:
        return Outcome.TOPIC_NOT_HANDLED
    shop = connection.execute(_SHOP, {"domain": delivery.shop}).first()
    if shop is None:
        return Outcome.UNKNOWN_SHOP
    if delivery.topic == "shop/redact" and shop[1]:
        # Shopify sends shop/redact 48 h after an uninstall: an installed shop reinstalled since (or the
        # request is not Shopify's). A recorded one is checked again by its job: the shop may reinstall first.
        return Outcome.SHOP_INSTALLED
    inserted = insert_ignoring_conflict(
        connection, WebhookEvent, ["event_id"],
        event_id=delivery.event_id, webhook_id=delivery.webhook_id, shop_domain=delivery.shop,
        topic=delivery.topic, api_version=delivery.api_version, triggered_at=delivery.triggered_at,
        received_at=utcnow(), status="pending", attempts=0, last_error=None, payload=delivery.body.decode("utf-8"),
    )
    return Outcome.QUEUE if inserted else Outcome.DUPLICATE


STRANDED_AFTER = timedelta(seconds=60)


def requeue_stranded(session: Session, redis: Redis, limit: int = 500) -> int:
    """Enqueue pending events whose job never reached Redis (or was lost). Returns how many."""
    cutoff = utcnow() - STRANDED_AFTER
    events = session.execute(
        select(WebhookEvent.event_id, WebhookEvent.topic, WebhookEvent.shop_domain)
        .where(WebhookEvent.status == "pending", WebhookEvent.received_at < cutoff)
        .order_by(WebhookEvent.received_at).limit(limit)
    ).all()
    count = 0
    for event_id, topic, shop in events:
        # A job finished or failed while its event is still pending is forgotten and run again.
        def enqueue(e: str = event_id, t: str = topic, s: str = shop) -> bool:
            return enqueue_event(redis, e, t, s)

        if requeue(redis, job_id_for_event(event_id), enqueue):
            count += 1
            log.info("stranded event enqueued", extra={"event_id": event_id, "topic": topic})
    return count


def requeue_unfinished_setups(session: Session, redis: Redis) -> int:
    """Enqueue post-install work for installed shops whose setup never completed, or that were set up
    before the app subscribed to the topics it handles now."""
    cutoff = utcnow() - STRANDED_AFTER
    shops = session.execute(
        select(Shop.id, Shop.installed_at).where(
            Shop.uninstalled_at.is_(None), Shop.access_token.is_not(None),
            Shop.setup_completed_at.is_(None), Shop.installed_at < cutoff)
    ).all()
    queued = sum(enqueue_setup(redis, shop_id, installed_at) for shop_id, installed_at in shops)
    # Shops set up before the app handled its current topics (an upgrade added some): the setup runs
    # again (every step of it is idempotent) and subscribes what is missing, once per set of topics.
    outdated = session.execute(
        select(Shop.id, Shop.installed_at).where(
            Shop.uninstalled_at.is_(None), Shop.access_token.is_not(None), Shop.setup_completed_at.is_not(None),
            or_(Shop.webhook_topics.is_(None), Shop.webhook_topics != topics_key()))
    ).all()
    return queued + sum(enqueue_setup(redis, shop_id, installed_at, resubscribe_job_id(shop_id, installed_at))
                        for shop_id, installed_at in outdated)


def retry_failed(session: Session, event_id: str) -> WebhookEvent:
    """Make a failed event pending again, for the caller to queue (``enqueue_event``) once the cause is fixed.

    ``NotFound`` for an unknown event; ``Conflict`` for one that has not failed, or whose payload is gone
    (redacted, or never readable): nothing could run it.
    """
    event = session.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))
    if event is None:
        raise NotFound(f"no event {event_id!r}")
    if event.status != "failed":
        raise Conflict(f"event is {event.status}; only failed events are retried")
    if event.payload is None:
        raise Conflict("event has no payload left (redacted or malformed); nothing to run")
    event.status, event.last_error = "pending", None
    return event


# --- retention ------------------------------------------------------------------------------------

HANDLED_STATUSES = ("processed", "ignored")
FAILED_STATUSES = ("failed",)
RETENTION_BATCH = 1000


def delete_old_events(session: Session, statuses: tuple[str, ...], received_before: datetime,
                      limit: int = RETENTION_BATCH) -> int:
    """Delete at most ``limit`` events in ``statuses`` received before ``received_before``; how many went.

    The one inbox statement not scoped by shop, on purpose: retention is by age and status alone, it
    reads nothing out and returns only a count, and going shop by shop would miss the events of shops
    already erased (a ``shop/redact`` keeps its own record). ``limit`` keeps each statement (and the
    locks it holds) short; rows another transaction holds (a redaction) are skipped, not waited on.
    Pending events are never in ``statuses``: whatever the inbox still has to do stays.
    """
    if "pending" in statuses:
        raise ValueError("pending events are never deleted")
    batch = (select(WebhookEvent.id)
             .where(WebhookEvent.status.in_(statuses), WebhookEvent.received_at < received_before)
             .order_by(WebhookEvent.received_at).limit(limit).with_for_update(skip_locked=True))
    result = session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(batch.scalar_subquery()),
                                                        WebhookEvent.status.in_(statuses))
                             .execution_options(synchronize_session=False))
    return result.rowcount  # type: ignore[attr-defined,no-any-return]
