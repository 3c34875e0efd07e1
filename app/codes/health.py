"""How the shop's connection to OnceCode is doing, as the merchant's Health page (and the API) show it:
webhook deliveries of the last day, catch-up reconciliation (and "run it now"), the Admin API bucket as
last seen, and the access token's life in plain words.

Reads only what the app already keeps: the webhook inbox (``WebhookEvent``), the reconcile cursor and
its job's state, the bucket mirror in Redis (``app.shopify.throttle``), the shop's token dates. Nothing
here calls the store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.codes import catch_up
from app.db import utcnow
from app.models import EVENT_STATUSES, ReconcileCursor, Shop, WebhookEvent
from app.queues import catch_up_job_id, enqueue_catch_up, job_state
from app.shopify.throttle import ASSUMED_MAXIMUM, ASSUMED_RESTORE_RATE, IDLE_TTL, ShopBuckets

DELIVERY_WINDOW = timedelta(hours=24)


# --- webhooks --------------------------------------------------------------------------------------


def webhook_deliveries(session: Session, domain: str, now: datetime | None = None) -> dict[str, Any]:
    """The shop's webhook deliveries received in the last 24 hours, by topic and status (``pending``,
    ``processed``, ``failed``, ``ignored``), with totals. One grouped count over the shop's events."""
    since = (now or utcnow()) - DELIVERY_WINDOW
    rows = session.execute(
        select(WebhookEvent.topic, WebhookEvent.status, func.count())
        .where(WebhookEvent.shop_domain == domain, WebhookEvent.received_at >= since)
        .group_by(WebhookEvent.topic, WebhookEvent.status)).all()
    topics: dict[str, dict[str, int]] = {}
    for topic, status, count in rows:
        topics.setdefault(topic, dict.fromkeys(EVENT_STATUSES, 0))[status] = count
    totals = {status: sum(counts[status] for counts in topics.values()) for status in EVENT_STATUSES}
    return {"since": since.isoformat(),
            "topics": [{"topic": topic, **counts, "total": sum(counts.values())}
                       for topic, counts in sorted(topics.items())],
            "totals": {**totals, "total": sum(totals.values())}}


# --- catch-up reconciliation -----------------------------------------------------------------------


def catch_up_status(session: Session, redis: Redis, shop_id: int) -> dict[str, Any]:
    """``catch_up.status_json`` with what its job is doing now (``queues.job_state``)."""
    return catch_up.status_json(session.get(ReconcileCursor, shop_id), job_state(redis, catch_up_job_id(shop_id)))


def reconcile_now(session: Session, redis: Redis, shop: Shop) -> bool:
    """Run catch-up for the shop now: its cursor made sure of (committed), the job queued. ``True`` if
    queued now, ``False`` when a run is queued or running already (a double click runs once).
    Raises ``RedisError`` when the queue is down, for the caller to report."""
    catch_up.cursor_for(session, shop)
    session.commit()
    return enqueue_catch_up(redis, shop.id)


# --- the Admin API bucket --------------------------------------------------------------------------


def admin_bucket(redis: Redis, domain: str) -> dict[str, Any]:
    """The shop's Admin API cost bucket as OnceCode last saw it (``ShopBuckets``' mirror of Shopify's
    ``throttleStatus``): points available and maximum then, the restore rate, when, and the points
    there should be now. ``known`` is False when no call was made for ``IDLE_TTL`` seconds: the bucket
    is full then, and its figures are the assumed ones until the next call reports the store's own."""
    state = ShopBuckets(redis).state(domain)
    seconds, micros = redis.time()
    now = seconds + micros / 1_000_000
    if not state.get("max"):
        return {"known": False, "maximum": ASSUMED_MAXIMUM, "available": ASSUMED_MAXIMUM,
                "available_now": ASSUMED_MAXIMUM, "restore_rate": ASSUMED_RESTORE_RATE, "seen_at": None,
                "idle_seconds": IDLE_TTL}
    maximum, available, rate = state["max"], state.get("available", state["max"]), state.get("rate", 0.0)
    seen = state.get("at", now)
    return {"known": True, "maximum": maximum, "available": available,
            "available_now": min(maximum, available + rate * max(0.0, now - seen)), "restore_rate": rate,
            "seen_at": datetime.fromtimestamp(seen, UTC).isoformat(), "idle_seconds": IDLE_TTL}


# --- the access token ------------------------------------------------------------------------------


def token_life(shop: Shop, now: datetime | None = None) -> dict[str, Any]:
    """The shop's offline access token and refresh token: when each expires and, in plain words, what
    that means for the merchant (an expiring token renews itself; only a store idle past the refresh
    token's life needs the app opened once, which renews it)."""
    now = now or utcnow()
    access, refresh = shop.access_token_expires_at, shop.refresh_token_expires_at
    if access is None:
        access_words = "Does not expire."
        access_state = "permanent"
    elif access > now:
        access_words = ("Renews itself: it lasts an hour, and OnceCode refreshes it a few minutes before it "
                        f"runs out (this one until {access:%d %b %Y, %H:%M} UTC).")
        access_state = "renews"
    else:
        access_words = "Expired; OnceCode refreshes it on its next call to your store."
        access_state = "renews" if shop.refresh_token is not None and (refresh is None or refresh > now) else "lapsed"
    if shop.refresh_token is None:
        refresh_words, refresh_state = ("None needed." if access is None else
                                        "None: open OnceCode from your Shopify admin to renew its access."), (
            "none" if access is None else "lapsed")
    elif refresh is None or refresh > now:
        refresh_words = ("Renews itself with every refresh"
                         + (f"; it would lapse only if OnceCode made no call to your store until "
                            f"{refresh:%d %b %Y}, and opening OnceCode renews it then." if refresh else "."))
        refresh_state = "renews"
    else:
        refresh_words = (f"Lapsed on {refresh:%d %b %Y}: open OnceCode from your Shopify admin (as you are now) "
                         "and its access is renewed.")
        refresh_state = "lapsed"
    if access_state == "lapsed":
        access_words = "Expired, and it can no longer be refreshed: open OnceCode from your Shopify admin to renew it."
    return {"access": {"expires_at": access.isoformat() if access else None, "state": access_state,
                       "words": access_words},
            "refresh": {"expires_at": refresh.isoformat() if refresh else None, "state": refresh_state,
                        "words": refresh_words}}
