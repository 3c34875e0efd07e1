"""Keeping the webhook inbox no longer than needed, scheduled by ``rq cron`` (see ``workers/cron.py``)."""

from __future__ import annotations

import logging
from datetime import timedelta

from app import inbox, runtime
from app.db import utcnow

log = logging.getLogger(__name__)


def delete_old_events(batch_size: int = inbox.RETENTION_BATCH) -> dict[str, int]:
    """Delete inbox events past their retention (rq cron runs this hourly), ``batch_size`` rows per transaction.

    Handled (processed, ignored) events go after ``WEBHOOK_RETENTION_DAYS`` and failed ones after
    ``WEBHOOK_FAILED_RETENTION_DAYS``, counted from receipt; a failed event keeps its body (personal
    data, perhaps) for ``flask events retry`` until then. Pending events are never deleted.

    Safe to run twice or concurrently: a second run finds nothing old enough left, and two runs skip
    the rows the other has locked.
    """
    rt = runtime.current()
    now = utcnow()
    plan = {"handled": (inbox.HANDLED_STATUSES, now - timedelta(days=rt.settings.webhook_retention_days)),
            "failed": (inbox.FAILED_STATUSES, now - timedelta(days=rt.settings.webhook_failed_retention_days))}
    result = {"handled": 0, "failed": 0, "batches": 0}
    for kind, (statuses, cutoff) in plan.items():
        while True:  # a batch per transaction: no long lock, and progress is kept if the job is stopped
            with rt.db.session_scope() as session:
                deleted = inbox.delete_old_events(session, statuses, cutoff, batch_size)
            result[kind] += deleted
            result["batches"] += 1
            if deleted < batch_size:
                break
    if result["handled"] or result["failed"]:
        log.info("old webhook events deleted",
                 extra={"status": f"{result['handled']} handled, {result['failed']} failed"})
    return result
