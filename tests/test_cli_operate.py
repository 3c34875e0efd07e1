"""`flask shops setup` and `flask events retry`: running again what failed, through the domain's own rules
(``lifecycle.restart_setup``, ``inbox.retry_failed``) — refusals change nothing and exit 1 naming the reason."""

from __future__ import annotations

import uuid

import pytest
from rq import Queue
from sqlalchemy import select

from app import inbox, lifecycle
from app.errors import Conflict, NotFound
from app.models import Shop, WebhookEvent
from app.queues import job_id_for_event, setup_job_id
from tests.helpers import make_shop, post_webhook

SHOP = "demo.myshopify.com"


def _event(client, db, status: str, payload_left: bool = True) -> str:  # type: ignore[no-untyped-def]
    event_id = str(uuid.uuid4())
    post_webhook(client, "customers/create", SHOP, {"id": 8}, event_id=event_id)
    values: dict[str, object] = {"status": status, "last_error": "boom"}
    if not payload_left:
        values["payload"] = None
    db.execute(WebhookEvent.__table__.update().where(WebhookEvent.event_id == event_id).values(**values))
    db.commit()
    return event_id


def test_setup_of_a_failed_shop_starts_it_again(runner, db, rt, redis):
    shop = make_shop(db, rt.cipher, set_up=False)
    shop.setup_error = "AdminAPIError: boom"
    db.commit()
    Queue("default", connection=redis).empty()
    result = runner.invoke(args=["shops", "setup", SHOP])
    assert (result.exit_code, result.output) == (0, "queued\n")
    db.expire_all()
    assert db.get(Shop, shop.id).setup_error is None
    assert Queue("default", connection=redis).job_ids == [setup_job_id(shop.id, shop.installed_at)]


def test_setup_of_an_uninstalled_shop_is_refused_and_changes_nothing(runner, db, rt, redis):
    shop = make_shop(db, rt.cipher, installed=False, set_up=False)
    shop.setup_error = "AdminAPIError: boom"
    db.commit()
    with pytest.raises(Conflict, match="not installed"):
        lifecycle.restart_setup(shop)
    db.rollback()
    result = runner.invoke(args=["shops", "setup", SHOP])
    assert result.exit_code == 1
    assert result.output == f"Error: {SHOP} is not installed; the merchant must install the app first\n"
    db.expire_all()
    assert db.get(Shop, shop.id).setup_error == "AdminAPIError: boom"
    assert Queue("default", connection=redis).job_ids == []


def test_retry_makes_a_failed_event_pending_and_queues_it(client, runner, db, rt, redis):
    make_shop(db, rt.cipher)
    event_id = _event(client, db, "failed")
    Queue("webhooks", connection=redis).empty()
    result = runner.invoke(args=["events", "retry", event_id])
    assert (result.exit_code, result.output) == (0, "queued\n")
    db.expire_all()
    event = db.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))
    assert (event.status, event.last_error) == ("pending", None)
    assert Queue("webhooks", connection=redis).job_ids == [job_id_for_event(event_id)]


@pytest.mark.parametrize(("status", "payload_left", "error"), [
    ("processed", True, "event is processed; only failed events are retried"),
    ("pending", True, "event is pending; only failed events are retried"),
    ("failed", False, "event has no payload left (redacted or malformed); nothing to run"),
])
def test_retry_refuses_what_cannot_run_again(client, runner, db, rt, redis, status, payload_left, error):
    make_shop(db, rt.cipher)
    event_id = _event(client, db, status, payload_left)
    with pytest.raises(Conflict, match="; "):
        inbox.retry_failed(db, event_id)
    db.rollback()
    Queue("webhooks", connection=redis).empty()
    result = runner.invoke(args=["events", "retry", event_id])
    assert (result.exit_code, result.output) == (1, f"Error: {error}\n")
    db.expire_all()
    event = db.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))
    assert (event.status, event.last_error) == (status, "boom")
    assert Queue("webhooks", connection=redis).job_ids == []


def test_retry_of_an_unknown_event_is_an_error(runner, db):
    with pytest.raises(NotFound):
        inbox.retry_failed(db, "nope")
    result = runner.invoke(args=["events", "retry", "nope"])
    assert (result.exit_code, result.output) == (1, "Error: no event 'nope'\n")
