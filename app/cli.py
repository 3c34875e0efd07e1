"""Operator commands: ``flask --app app <group> <command>`` (``make shell`` has the venv on PATH)."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from app import inbox, lifecycle
from app.models import DataRequest, Shop, WebhookEvent
from app.queues import delete_job, enqueue_event, enqueue_setup, job_id_for_event, setup_job_id
from app.web import rt


def _shop_or_fail(session, domain: str) -> Shop:  # type: ignore[no-untyped-def]
    shop = lifecycle.shop_by_domain(session, domain)
    if shop is None:
        raise click.ClickException(f"no shop {domain!r}; `flask shops list` shows the known ones")
    return shop


def register_cli(app: Flask) -> None:
    shops = AppGroup("shops", help="Installed shops.")
    events = AppGroup("events", help="The webhook inbox.")
    data_requests = AppGroup("data-requests", help="customers/data_request exports.")
    tokens = AppGroup("tokens", help="Stored access tokens.")

    @shops.command("list")
    def shops_list() -> None:
        """Every shop with its install and set-up state."""
        with rt().db.session_scope() as session:
            for shop in session.scalars(select(Shop).order_by(Shop.domain)):
                state = "installed" if shop.is_installed else "uninstalled"
                setup = ("set up" if shop.setup_completed_at else
                         f"setup failed: {shop.setup_error}" if shop.setup_error else "setting up")
                expiry = shop.access_token_expires_at.isoformat() if shop.access_token_expires_at else "-"
                click.echo(f"{shop.domain}\t{state}\t{setup}\ttoken expires {expiry}")

    @shops.command("setup")
    @click.argument("domain")
    def shops_setup(domain: str) -> None:
        """Queue post-install work (webhook subscriptions, default programs) again."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            if not shop.is_installed:
                raise click.ClickException(f"{domain} is not installed; the merchant must install the app first")
            shop.setup_completed_at, shop.setup_error = None, None
            shop_id, installed_at = shop.id, shop.installed_at
        delete_job(rt().redis, setup_job_id(shop_id, installed_at))
        click.echo("queued" if enqueue_setup(rt().redis, shop_id, installed_at) else "not queued: is Redis up?")

    @events.command("list")
    @click.option("--status", type=click.Choice(["pending", "processed", "failed", "ignored"]))
    @click.option("--shop", "domain")
    @click.option("--limit", default=50, show_default=True)
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
            event = session.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))
            if event is None:
                raise click.ClickException(f"no event {event_id!r}")
            if event.status != "failed":
                raise click.ClickException(f"event is {event.status}; only failed events are retried")
            if event.payload is None:
                raise click.ClickException("event has no payload left (redacted or malformed); nothing to run")
            event.status, event.last_error = "pending", None
            topic = event.topic
        delete_job(rt().redis, job_id_for_event(event_id))
        click.echo("queued" if enqueue_event(rt().redis, event_id, topic) else
                   "recorded as pending; Redis unreachable, the sweep will queue it")

    @events.command("requeue-stranded")
    def events_requeue() -> None:
        """Queue pending events that never reached a worker (what the scheduler does every minute)."""
        with rt().db.session_scope() as session:
            count = inbox.requeue_stranded(session, rt().redis)
            setups = inbox.requeue_unfinished_setups(session, rt().redis)
        click.echo(f"{count} events and {setups} shop setups queued")

    @data_requests.command("list")
    @click.argument("domain")
    def data_requests_list(domain: str) -> None:
        """Data requests received for one shop."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            for r in session.scalars(select(DataRequest).where(DataRequest.shop_id == shop.id)
                                     .order_by(DataRequest.created_at)):
                click.echo(f"{r.id}\t{r.created_at:%Y-%m-%d}\trequest {r.shopify_request_id}\t"
                           f"customer {r.shopify_customer_id}")

    @data_requests.command("show")
    @click.argument("domain")
    @click.argument("request_id", type=int)
    def data_requests_show(domain: str, request_id: int) -> None:
        """Print one export as JSON, ready to send to the merchant."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            row = session.scalar(select(DataRequest).where(DataRequest.shop_id == shop.id,
                                                           DataRequest.id == request_id))
            if row is None:
                raise click.ClickException(f"no data request {request_id} for {domain}")
            click.echo(json.dumps(row.data, indent=2))

    @tokens.command("rotate-key")
    def tokens_rotate() -> None:
        """Re-encrypt every stored token with the first TOKEN_ENCRYPTION_KEY (after adding a new key)."""
        cipher = rt().cipher
        with rt().db.session_scope() as session:
            count = 0
            for shop in session.scalars(select(Shop)):
                if shop.access_token:
                    shop.access_token = cipher.rotate(shop.access_token)
                if shop.refresh_token:
                    shop.refresh_token = cipher.rotate(shop.refresh_token)
                count += 1
        click.echo(f"{count} shops re-encrypted; the old key can now be removed")

    for group in (shops, events, data_requests, tokens):
        app.cli.add_command(group)
