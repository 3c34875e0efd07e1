"""Handing a throttled job back to rq for later, instead of holding a worker while a bucket refills.

A job that catches ``Throttled`` returns ``defer(exc)``: an ``rq.Retry`` with the wait as its
interval. Returning a ``Retry`` (rather than raising, or enqueueing a copy with ``enqueue_in``) is
rq's own way to run the same job again later, and in rq 3 it is kept apart from the job's error
retries, as rq's source shows:

- ``Worker._finalize_success`` hands a returned ``Retry`` to ``handle_job_retry``, which counts it
  in ``job.number_of_retries`` and schedules the job (status ``scheduled``) after the interval.
  Error retries (``enqueue(..., retry=Retry(...))``) count down ``job.retries_left`` instead, so a
  deferral spends none of them: a real error later still gets every retry it was promised.
- The job keeps its id and hash, so de-duplication by job id (``unique=True``, or the check in
  ``app.queues``) still sees it while it waits.
- A rate-limited job gives its per-shop slot back while scheduled (``release_slot`` after the
  retry) and queues for one again when rq's scheduler moves it back (``_enqueue_rate_limited_job``),
  so a throttled shop does not hold a slot, let alone a worker, while it waits.
- ``Retry.max`` is compared with ``number_of_retries``, which only deferrals raise: after
  ``MAX_DEFERRALS`` the job would fail without a traceback. ``defer`` returns ``None`` before that,
  and the caller re-raises ``Throttled`` so the job's ordinary error retries (with their back-off
  and the job's own failure bookkeeping) take over.
- The interval must be a whole number of seconds (``Retry`` rejects floats), so the wait is rounded up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TypeVar

from rq import Retry, get_current_job

from app.codes.cleanup import JobNotDone
from app.shopify.client import AccessDenied, Throttled
from app.shopify.tokens import ShopNotInstalled

log = logging.getLogger(__name__)

MAX_DEFERRALS = 50  # a job deferred this often falls back to its error retries


def defer(exc: Throttled, shop: str, limit: int | None = None) -> Retry | None:
    """The ``Retry`` to return so that rq runs this job again once ``shop``'s bucket has refilled.

    ``None`` when the job cannot be deferred (not running under rq, or deferred ``limit`` times
    already, ``MAX_DEFERRALS`` by default): the caller then re-raises ``exc``, which is transient and
    retried by rq. A job that works through a queue of its own (``workers.codes.issue_codes``) passes
    a higher ``limit``: it is deferred again and again while a flood drains, making progress each time.
    """
    limit = limit or MAX_DEFERRALS
    job = get_current_job()
    if job is None or (job.number_of_retries or 0) >= limit:
        return None
    delay = max(1, math.ceil(exc.retry_after))
    log.info("job deferred: Admin API bucket empty", extra={"shop": shop, "job_id": job.id,
                                                            "reason": f"{delay} s"})
    return Retry(max=limit, interval=delay)


T = TypeVar("T")


def store_turn(domain: str, turn: Callable[[], T], limit: int, waiting: str) -> tuple[T | None, str | Retry | None]:
    """One turn of a job that works on the store in several calls: ``(what turn() returned, None)``, or
    ``(None, the job's answer)`` when the store ended the turn — the shop is not installed, or its token
    was revoked under us (the uninstall webhook is on its way): done; a store-side job still running
    past the turn (``cleanup.JobNotDone``): the worker is handed back until it should be done (logged
    with ``waiting``); the bucket is empty: deferred like every throttled job (``defer``)."""
    try:
        return turn(), None
    except ShopNotInstalled:
        return None, "shop not installed"
    except AccessDenied:
        return None, "store refused the token"
    except JobNotDone as exc:
        log.info(waiting, extra={"shop": domain, "reason": str(exc)})
        return None, Retry(max=limit, interval=max(1, round(exc.retry_after)))
    except Throttled as exc:
        later = defer(exc, domain, limit=limit)
        if later is not None:
            return None, later
        raise
