"""``flask events list|retry|requeue-stranded``: the webhook inbox — what arrived, and running again what
failed or never reached a worker."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app import inbox
from app.cli.common import MAX_ROWS, ROWS
from app.errors import Conflict, NotFound
from app.models import WebhookEvent
from app.queues import delete_job, enqueue_event, job_id_for_event
from app.web import rt

events = AppGroup("events", help="The webhook inbox.")


@events.command("list")
@click.option("--status", type=click.Choice(["pending", "processed", "failed", "ignored"]))
@click.option("--shop", "domain")
@click.option("--limit", type=ROWS, default=50, show_default=True, help=f"at most {MAX_ROWS}")
def events_list(status: str | None, domain: str | None, limit: int) -> None:
    """Recent webhook events, newest first."""
    query = select(WebhookEvent).order_by(WebhookEvent.received_at.desc()).limit(limit)
    if status:
        query = query.where(WebhookEvent.status == status)
    if domain:
        query = query.where(WebhookEvent.shop_domain == domain)
    with rt().db.session_scope() as session:
        for e in session.scalars(query):
            error = f"\t{e.last_error}" if e.last_error else ""
            click.echo(f"{e.received_at:%Y-%m-%d %H:%M:%S}\t{e.event_id}\t{e.shop_domain}\t{e.topic}\t"
                       f"{e.status}\tattempts={e.attempts}{error}")


@events.command("retry")
@click.argument("event_id")
def events_retry(event_id: str) -> None:
    """Run a failed event again (after fixing what made it fail)."""
    with rt().db.session_scope() as session:
        try:
            event = inbox.retry_failed(session, event_id)
        except (NotFound, Conflict) as exc:
            raise click.ClickException(str(exc)) from exc
        topic, domain = event.topic, event.shop_domain
    delete_job(rt().redis, job_id_for_event(event_id))
    click.echo("queued" if enqueue_event(rt().redis, event_id, topic, domain) else
               "recorded as pending; Redis unreachable, the sweep will queue it")


@events.command("requeue-stranded")
def events_requeue() -> None:
    """Queue pending events that never reached a worker (what the scheduler does every minute)."""
    with rt().db.session_scope() as session:
        count = inbox.requeue_stranded(session, rt().redis)
        setups = inbox.requeue_unfinished_setups(session, rt().redis)
    click.echo(f"{count} events and {setups} shop setups queued")
