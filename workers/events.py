"""Running one inbox event: load it, skip it if handled, call the domain, record the outcome."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import requests
from redis.exceptions import RedisError
from rq import get_current_job
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app import runtime
from app.db import discard_after_commit, run_after_commit, utcnow
from app.errors import OnceCodeError
from app.models import WebhookEvent
from app.runtime import Runtime

log = logging.getLogger(__name__)

Handler = Callable[[Session, Runtime, WebhookEvent, dict[str, Any]], str | None]


def is_transient(exc: BaseException) -> bool:
    """Worth another try later: infrastructure hiccups and errors that say so themselves."""
    if isinstance(exc, OnceCodeError):
        return bool(getattr(exc, "transient", False)) or exc.status == 503
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or exc.__class__.__name__ == "OperationalError"
    return isinstance(exc, RedisError | requests.RequestException | TimeoutError | ConnectionError)


def final_attempt() -> bool:
    """Whether the running job has no retry left (or is not running under rq at all)."""
    job = get_current_job()
    return job is None or not job.retries_left


def run_event(event_id: str, handler: Handler) -> str:
    """Run ``handler`` for the event exactly once, however often this job itself is run.

    The event row is locked (FOR UPDATE) while its handler runs, so a duplicate job waits and then
    finds it processed. A transient failure is re-raised for rq's ``Retry``; a permanent one, or the
    last retry, marks the event ``failed`` with the reason, where ``flask events`` shows it.
    """
    rt = runtime.current()
    session = rt.db.sessions()
    try:
        event = session.scalars(select(WebhookEvent).where(WebhookEvent.event_id == event_id)
                                .with_for_update()).one_or_none()
        if event is None:
            log.warning("event not found (redacted?)", extra={"event_id": event_id})
            return "missing"
        if event.status != "pending":
            return f"already {event.status}"
        context = {"event_id": event_id, "topic": event.topic, "shop": event.shop_domain}
        event.attempts += 1
        try:
            with session.begin_nested():
                result = handler(session, rt, event, json.loads(event.payload or "{}"))
        except Exception as exc:
            discard_after_commit(session)
            transient = is_transient(exc)
            event.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if not transient or final_attempt():
                event.status = "failed"
            session.commit()
            log.warning("event failed", exc_info=not transient, extra={**context, "reason": event.last_error,
                                                                       "status": event.status})
            if event.status == "failed":
                return "failed"
            raise
        if event.status == "pending":
            event.status = "processed"
        event.processed_at = utcnow()
        event.payload = None  # handled: keep no personal data longer than needed
        session.commit()
        run_after_commit(session)  # e.g. queue the issuance of a code the handler reserved
        log.info("event processed", extra={**context, "reason": result})
        return event.status
    finally:
        session.close()
