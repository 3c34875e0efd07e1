"""Periodic work, scheduled by ``rq cron`` (see ``workers/cron.py``)."""

from __future__ import annotations

import logging

from app import inbox, runtime
from app.codes import issuance
from app.queues import enqueue_issuance, enqueue_revoke, requeue, revoke_job_id

log = logging.getLogger(__name__)


def requeue_stranded_events() -> dict[str, int]:
    """Enqueue events and shop setups that never reached a worker (Redis was down, a job was lost).

    Safe to run twice or concurrently: jobs are enqueued with unique ids, so a second enqueue of
    the same event is refused by rq, and handling an event twice is a no-op anyway.
    """
    rt = runtime.current()
    with rt.db.session_scope() as session:
        events = inbox.requeue_stranded(session, rt.redis)
        setups = inbox.requeue_unfinished_setups(session, rt.redis)
    return {"events": events, "setups": setups}


def requeue_stranded_codes() -> dict[str, int]:
    """Enqueue the issuance (or deactivation) of codes whose job was lost: Redis down at enqueue, a job
    that failed for good while its codes were claimed by another, a worker killed without retries.

    Safe to run twice or concurrently: a live job is left alone, and issuing or deactivating a code
    twice is a no-op (see ``workers.codes``).
    """
    rt = runtime.current()
    with rt.db.session_scope() as session:
        to_issue, to_revoke = issuance.stranded(session)
    issued = sum(enqueue_issuance(rt.redis, shop_id) for shop_id in sorted({shop_id for shop_id, _ in to_issue}))
    revoked = sum(requeue(rt.redis, revoke_job_id(code_id),
                          lambda s=shop_id, c=code_id: enqueue_revoke(rt.redis, s, c))
                  for shop_id, code_id in to_revoke)
    if issued or revoked:
        log.info("stranded codes enqueued", extra={"status": f"{issued} to issue, {revoked} to deactivate"})
    return {"issue": issued, "revoke": revoked}  # issuing jobs queued (one per shop), deactivations queued
