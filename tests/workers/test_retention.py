"""Retention: the inbox keeps webhook events (bodies with personal data, perhaps) only as long as needed.

A scheduled job deletes handled (processed, ignored) events after WEBHOOK_RETENTION_DAYS and failed
ones after WEBHOOK_FAILED_RETENTION_DAYS, in batches, and never a pending one. Run by a real worker.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from rq import Queue
from rq.cron import CronScheduler
from sqlalchemy import select

from app import inbox
from app.config import load_settings
from app.db import utcnow
from app.errors import ConfigError
from app.models import WebhookEvent
from tests.conftest import run_worker
from tests.test_config import PRODUCTION
from workers.retention import delete_old_events

SHOP = "demo.myshopify.com"
OTHER = "other.myshopify.com"


def add_event(db, status: str, age_days: float, shop: str = SHOP, name: str = "") -> str:  # type: ignore[no-untyped-def]
    event_id = name or str(uuid.uuid4())
    db.add(WebhookEvent(event_id=event_id, shop_domain=shop, topic="customers/create", status=status, attempts=1,
                        received_at=utcnow() - timedelta(days=age_days),
                        payload='{"id": 1, "email": "someone@example.com"}' if status in ("pending", "failed")
                        else None))
    db.commit()
    return event_id


def remaining(db) -> set[str]:  # type: ignore[no-untyped-def]
    db.expire_all()
    return set(db.scalars(select(WebhookEvent.event_id)))


def run_job(redis, **kwargs) -> dict[str, int]:  # type: ignore[no-untyped-def]
    job = Queue("maintenance", connection=redis).enqueue("workers.retention.delete_old_events", kwargs=kwargs)
    run_worker(redis)
    assert job.get_status() == "finished"
    return job.return_value()


def test_old_events_go_young_ones_and_pending_ones_stay(db, rt, redis):
    gone = {add_event(db, "processed", 8, name="processed-8d"), add_event(db, "ignored", 7.01, name="ignored-7d"),
            add_event(db, "processed", 30, shop=OTHER, name="other-shop-30d"),
            add_event(db, "failed", 31, name="failed-31d")}
    kept = {add_event(db, "processed", 6.9, name="processed-6.9d"), add_event(db, "ignored", 1, name="ignored-1d"),
            add_event(db, "failed", 8, name="failed-8d"), add_event(db, "failed", 29.9, name="failed-29.9d"),
            add_event(db, "pending", 400, name="pending-400d"), add_event(db, "pending", 0, name="pending-now")}

    result = run_job(redis)

    assert remaining(db) == kept
    assert result["handled"] == 3 and result["failed"] == 1
    assert not gone & remaining(db)


def test_deletion_goes_in_batches_until_none_is_left(db, rt, redis):
    old = {add_event(db, "processed", 10) for _ in range(10)} | {add_event(db, "failed", 40) for _ in range(3)}
    young = {add_event(db, "processed", 1) for _ in range(4)}
    pending = {add_event(db, "pending", 50) for _ in range(5)}

    result = run_job(redis, batch_size=3)

    assert remaining(db) == young | pending and not old & remaining(db)
    # Handled: 3 + 3 + 3 + 1 (short: done). Failed: 3, then an empty batch says it is done.
    assert result == {"handled": 10, "failed": 3, "batches": 6}


def test_one_statement_deletes_at_most_its_batch(db, rt):
    for _ in range(5):
        add_event(db, "processed", 10)
    assert inbox.delete_old_events(db, inbox.HANDLED_STATUSES, utcnow() - timedelta(days=7), limit=2) == 2
    db.commit()
    assert len(remaining(db)) == 3


def test_running_it_again_changes_nothing(db, rt, redis):
    add_event(db, "processed", 10)
    add_event(db, "failed", 40)
    kept = {add_event(db, "processed", 1), add_event(db, "pending", 90)}
    assert run_job(redis)["handled"] == 1
    assert run_job(redis) == {"handled": 0, "failed": 0, "batches": 2}
    assert remaining(db) == kept


def test_pending_events_are_never_deleted(db, rt):
    add_event(db, "pending", 1000)
    with pytest.raises(ValueError, match="pending events are never deleted"):
        inbox.delete_old_events(db, ("pending", "processed"), utcnow())
    assert len(remaining(db)) == 1


def test_the_retention_periods_come_from_the_settings(app_factory, db, redis):
    app_factory(webhook_retention_days=2, webhook_failed_retention_days=3)  # the worker's runtime now
    gone = {add_event(db, "processed", 2.1), add_event(db, "failed", 3.1)}
    kept = {add_event(db, "processed", 1.9), add_event(db, "failed", 2.9)}
    assert run_job(redis) == {"handled": 1, "failed": 1, "batches": 2}
    assert remaining(db) == kept and not gone & remaining(db)


def test_it_works_on_sqlite_too(sqlite_app):
    """The embedded default (`make run`) runs the same scheduler on SQLite, which has no FOR UPDATE."""
    rt = sqlite_app.extensions["oncecode"]
    with rt.db.session_scope() as session:
        kept = {add_event(session, "processed", 1), add_event(session, "pending", 30)}
        for age in (10, 10, 10, 40):
            add_event(session, "processed" if age == 10 else "failed", age)
    assert run_job(rt.redis, batch_size=2) == {"handled": 3, "failed": 1, "batches": 3}
    with rt.db.session_scope() as session:
        assert remaining(session) == kept


def test_the_scheduler_runs_it_hourly(redis):
    scheduler = CronScheduler(connection=redis)
    scheduler.load_config_from_file("workers.cron")
    [job] = [j for j in scheduler.get_jobs() if j.func is delete_old_events]
    assert (job.queue_name, job.interval) == ("maintenance", 3600)


def test_retention_settings_default_and_are_validated():
    settings = load_settings(PRODUCTION)
    assert (settings.webhook_retention_days, settings.webhook_failed_retention_days) == (7, 30)
    changed = load_settings({**PRODUCTION, "WEBHOOK_RETENTION_DAYS": "1", "WEBHOOK_FAILED_RETENTION_DAYS": "90"})
    assert (changed.webhook_retention_days, changed.webhook_failed_retention_days) == (1, 90)
    for name in ("WEBHOOK_RETENTION_DAYS", "WEBHOOK_FAILED_RETENTION_DAYS"):
        for value in ("0", "-1", "seven", "3651", "\u00b2", "1.5"):
            with pytest.raises(ConfigError, match=f"{name} must be a whole number of days from 1 to 3650"):
                load_settings({**PRODUCTION, name: value})
