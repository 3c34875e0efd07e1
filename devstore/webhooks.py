"""Webhook delivery: one ``Delivery`` row per subscription and event, POSTed with Shopify's headers.

``emit`` records deliveries in the caller's transaction, so a customer and its ``customers/create``
deliveries commit together. A ``Deliverer`` sends what is due — from a background thread in a running
devstore, or synchronously through ``deliver_due`` in tests and the control API — and retries failures
with exponential back-off, recording every attempt on the row: that is the store's webhook log.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.shopify.verify import webhook_hmac
from devstore.models import Delivery, Store, WebhookSubscription
from devstore.state import State

log = logging.getLogger(__name__)

# Shopify: the connection must be accepted within 1 s and the answer must come within 5 s.
TIMEOUT = (1.0, 5.0)


def topic_enum(topic: str) -> str:
    """``customers/create`` → ``CUSTOMERS_CREATE`` (the GraphQL ``WebhookSubscriptionTopic``)."""
    return topic.upper().replace("/", "_")


def rest_topic(value: str) -> str:
    """``CUSTOMERS_CREATE`` or ``customers/create`` → ``customers/create``.

    Only the first underscore separates resource and event, as in every topic devstore fires.
    """
    if "/" in value:
        return value.lower()
    return value.lower().replace("_", "/", 1)


def _dropped(faults: dict[str, Any], topic: str) -> bool:
    drop = faults.get("drop")
    if drop is True:
        return True
    return isinstance(drop, list) and topic in {rest_topic(str(t)) for t in drop}


def emit(session: Session, shop: str, topic: str, payload: dict[str, Any],
         at: datetime | None = None) -> list[Delivery]:
    """Record the deliveries of one event: one per subscription to ``topic`` (REST form).

    All of them share one ``X-Shopify-Event-Id``; each has its own ``X-Shopify-Webhook-Id``. The
    store's faults apply here: ``drop`` records them as dropped, ``delay`` holds the first attempt
    back, ``duplicate`` records every message twice with the same ids.
    """
    store = session.get(Store, shop)
    if store is None:
        raise ValueError(f"no store {shop}")
    moment = at or datetime.now(UTC)
    faults = store.faults or {}
    subscriptions = session.scalars(select(WebhookSubscription).where(
        WebhookSubscription.shop == shop, WebhookSubscription.topic == topic_enum(topic))
        .order_by(WebhookSubscription.id)).all()
    # Serialised once: the HMAC is computed over exactly these bytes at every attempt.
    body = json.dumps(payload, separators=(",", ":"))
    event_id = str(uuid.uuid4())
    dropped = _dropped(faults, topic)
    first_attempt = moment + timedelta(seconds=float(faults.get("delay") or 0))
    copies = 2 if faults.get("duplicate") else 1
    deliveries = []
    for subscription in subscriptions:
        webhook_id = str(uuid.uuid4())
        for _ in range(copies):
            delivery = Delivery(
                shop=shop, topic=topic, uri=subscription.uri, event_id=event_id, webhook_id=webhook_id,
                triggered_at=moment, payload=body, attempts=0,
                status="dropped" if dropped else "pending",
                next_attempt_at=None if dropped else first_attempt,
            )
            session.add(delivery)
            deliveries.append(delivery)
    log.info("event %s %s for %s: %d deliveries%s", event_id, topic, shop, len(deliveries),
             " (dropped)" if dropped and deliveries else "")
    return deliveries


@dataclass(frozen=True)
class Outgoing:
    """A delivery as sent over HTTP, read from its row before the (lock-free) POST."""

    id: int
    shop: str
    uri: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def triggered_at_header(moment: datetime) -> str:
    """``X-Shopify-Triggered-At``: ISO 8601 in UTC with a ``Z``, as Shopify sends it."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def headers_for(delivery: Delivery, secret: str, api_version: str) -> dict[str, str]:
    """Shopify's webhook headers for one delivery, signed with the app's client secret."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": delivery.topic,
        "X-Shopify-Hmac-Sha256": webhook_hmac(secret, delivery.payload.encode()),
        "X-Shopify-Shop-Domain": delivery.shop,
        "X-Shopify-API-Version": api_version,
        "X-Shopify-Webhook-Id": delivery.webhook_id,
        "X-Shopify-Triggered-At": triggered_at_header(delivery.triggered_at),
        "X-Shopify-Event-Id": delivery.event_id,
    }


def post(outgoing: Outgoing) -> Outcome:
    """One attempt. Redirects are not followed: like Shopify, only a 2xx answer counts."""
    try:
        response = requests.post(outgoing.uri, data=outgoing.body, headers=outgoing.headers,
                                 timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:500])
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return Outcome(response.status_code, error)


class Deliverer:
    """Sends due deliveries and schedules retries; one per devstore app.

    ``deliver_due`` is serialised by its own lock so that the background thread and a synchronous
    call (tests, ``POST /_devstore/stores/<shop>/deliver``) never send the same attempt twice. The
    state lock is held only to read and record rows, never during a POST: the app answering a
    webhook may well call devstore's Admin API meanwhile.
    """

    def __init__(self, state: State, poll_seconds: float = 0.2) -> None:
        self.state = state
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="devstore-deliveries", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background thread after its current attempt."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.deliver_due()
            except Exception:  # keep delivering after a bad row or a reset mid-attempt
                log.exception("webhook delivery round failed")

    def deliver_due(self, now: datetime | None = None, shop: str | None = None, force: bool = False) -> int:
        """Attempt every pending delivery due at ``now`` (all pending ones when ``force``); return how many."""
        with self._lock:
            moment = now or datetime.now(UTC)
            outgoing = self._due(moment, shop, force)
            for item in outgoing:
                self._record(item, post(item), moment)
            return len(outgoing)

    def _due(self, moment: datetime, shop: str | None, force: bool) -> list[Outgoing]:
        config = self.state.config
        query = select(Delivery).where(Delivery.status == "pending").order_by(Delivery.id)
        if not force:
            query = query.where(Delivery.next_attempt_at <= moment)
        if shop is not None:
            query = query.where(Delivery.shop == shop)
        with self.state.session() as session:
            return [Outgoing(d.id, d.shop, d.uri, d.payload.encode(),
                             headers_for(d, config.api_secret, config.webhook_api_version))
                    for d in session.scalars(query)]

    def _record(self, item: Outgoing, outcome: Outcome, moment: datetime) -> None:
        config = self.state.config
        with self.state.session() as session:
            delivery = session.get(Delivery, item.id)
            if delivery is None:  # the store was reset during the attempt
                return
            delivery.attempts += 1
            delivery.last_status = outcome.status_code
            delivery.last_error = outcome.error
            if outcome.delivered:
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", moment, None
            elif delivery.attempts > config.max_delivery_retries:
                delivery.status, delivery.next_attempt_at = "failed", None
            else:
                backoff = config.retry_base_seconds * 2 ** (delivery.attempts - 1)
                delivery.next_attempt_at = moment + timedelta(seconds=backoff)
            log.info("delivery %s %s to %s for %s: attempt %d, %s", item.headers["X-Shopify-Webhook-Id"],
                     delivery.topic, item.uri, item.shop, delivery.attempts, outcome.error or outcome.status_code)
