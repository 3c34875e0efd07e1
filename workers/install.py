"""Post-install work, queued by the OAuth callback (and by the sweep if that enqueue was lost)."""

from __future__ import annotations

import logging

from rq import Retry

from app import lifecycle, runtime
from app.codes import attachment
from app.db import utcnow
from app.models import Shop
from app.queues import SUBSCRIBED_TOPICS, topics_key
from app.shopify.client import AdminClient, Throttled
from app.shopify.tokens import ShopNotInstalled
from workers.deferral import defer
from workers.events import is_transient

log = logging.getLogger(__name__)


def set_up_shop(shop_id: int) -> str | Retry:
    """Create the default programs, the webhook subscriptions and the code metafield definitions.

    Safe to run twice or concurrently: programs are unique per (shop, kind), subscriptions are
    looked up before being created and a definition that exists is answered ``TAKEN``, which is
    fine, so a second run finds everything in place. That is also what
    makes deferral safe: a job throttled half-way returns an ``rq.Retry`` and simply runs again.
    """
    rt = runtime.current()
    with rt.db.session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or not shop.is_installed:
            return "shop not installed"
        domain = shop.domain
        lifecycle.create_default_programs(session, shop_id)
    try:
        client = rt.admin_client(shop_id, domain)
        registered = register_webhooks(client, f"{rt.settings.app_url}/webhooks")
        definitions = attachment.create_definitions(client)
    except ShopNotInstalled:
        return "shop not installed"
    except Throttled as exc:
        later = defer(exc, domain)
        if later is not None:
            return later  # not a failure: the bucket needs time, which rq waits out without a worker
        _record_setup_error(shop_id, domain, exc)
        raise
    except Exception as exc:
        _record_setup_error(shop_id, domain, exc)
        if is_transient(exc):
            raise
        return "failed"
    with rt.db.session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is not None and shop.is_installed:
            shop.setup_completed_at = utcnow()
            shop.setup_error = None
            shop.webhook_topics = topics_key()
    log.info("shop set up", extra={"shop": domain, "status": f"{registered} subscriptions and {definitions} "
                                                            "metafield definitions created"})
    return "set up"


def _record_setup_error(shop_id: int, domain: str, exc: Exception) -> None:
    with runtime.current().db.session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is not None:
            shop.setup_error = f"{type(exc).__name__}: {exc}"[:2000]
    log.warning("shop setup failed", extra={"shop": domain, "reason": str(exc)})


def register_webhooks(client: AdminClient, uri: str) -> int:
    """Subscribe the shop to every topic we handle at ``uri``; returns how many were created."""
    wanted = {topic.upper().replace("/", "_"): topic for topic in SUBSCRIBED_TOPICS}
    existing = client.query("webhookSubscriptions", {"topics": list(wanted), "first": 100})
    have: dict[str, dict] = {}
    for node in existing["webhookSubscriptions"]["nodes"]:
        if node["uri"] == uri or node["topic"] not in have:
            have[node["topic"]] = node
    created = 0
    for enum_topic in wanted:
        current = have.get(enum_topic)
        if current is None:
            client.mutate("webhookSubscriptionCreate", {"topic": enum_topic, "webhookSubscription": {
                "uri": uri, "format": "JSON"}})
            created += 1
        elif current["uri"] != uri:
            client.mutate("webhookSubscriptionUpdate", {"id": current["id"], "webhookSubscription": {"uri": uri}})
    return created
