"""The store clean-up: expired and revoked codes deleted from the store in bulk (see ``app.codes.cleanup``)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from rq import Retry, get_current_job

from app import runtime
from app.codes import cleanup
from app.db import utcnow
from app.queues import enqueue_cleanup
from workers.codes import MAX_RETURNS, TURN_SECONDS, installed_shop
from workers.deferral import store_turn

log = logging.getLogger(__name__)


def clean_up_store(shop_id: int) -> str | Retry:
    """Delete the shop's due codes from its store, 250 per ``discountCodeBulkDelete``, polling each job.

    Gives its worker back when a turn (``TURN_SECONDS``) is over with a store job still running, and is
    deferred while the shop's bucket is empty; either way it keeps its claims, which the same job id
    (``store-cleanup-<shop>``) takes back. Safe to run twice or concurrently: it works only on rows it
    claimed, never sends a row whose job is recorded again (it polls that job), and deleting a discount
    that is gone already deletes nothing (see ``app.codes.cleanup``).
    """
    rt = runtime.current()
    shop = installed_shop(rt, shop_id)
    if shop is None:
        return "shop not installed"
    grace = timedelta(days=rt.settings.store_cleanup_grace_days)
    def turn() -> tuple[cleanup.StoreCleaner, cleanup.Outcome]:
        cleaner = cleanup.StoreCleaner(rt.db, rt.admin_client(shop.id, shop.domain), shop, _claimant(shop_id), grace)
        return cleaner, cleaner.run(deadline=time.monotonic() + TURN_SECONDS)

    done, answer = store_turn(shop.domain, turn, MAX_RETURNS, "store clean-up waits for a bulk delete")
    if done is None:
        return answer  # type: ignore[return-value]
    cleaner, outcome = done
    cleaner.release()
    summary = outcome.summary()
    log.info("store clean-up done", extra={"shop": shop.domain, "status": summary})
    return summary


def _claimant(shop_id: int) -> str:
    job = get_current_job()
    return job.id if job is not None else f"store-cleanup-{shop_id}-inline"


def schedule_store_cleanup() -> dict[str, int]:
    """Queue the clean-up for every installed shop with codes to remove (rq cron runs this every hour).

    Safe to run twice or concurrently: a shop whose clean-up job is still live is not queued again.
    """
    rt = runtime.current()
    grace = timedelta(days=rt.settings.store_cleanup_grace_days)
    with rt.db.session_scope() as session:
        shop_ids = list(session.scalars(cleanup.shops_due(utcnow(), grace)))
    queued = sum(enqueue_cleanup(rt.redis, shop_id) for shop_id in shop_ids)
    if queued:
        log.info("store clean-up queued", extra={"status": f"{queued} shops"})
    return {"queued": queued}
