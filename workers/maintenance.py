"""Periodic work, scheduled by ``rq cron`` (see ``workers/cron.py``)."""

from __future__ import annotations

from app import inbox, runtime


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
