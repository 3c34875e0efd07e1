"""``flask reconcile status|now|interval``: catch-up reconciliation (``app.codes.catch_up``) of the paid orders
the webhooks missed — how far it has read, running it now (queued, or here page by page), how often it runs."""

from __future__ import annotations

import time

import click
from flask.cli import AppGroup

from app.cli.common import Checked, cell, echo_table, moment, shop_or_fail
from app.codes import catch_up
from app.models import ReconcileCursor
from app.params import whole_number
from app.queues import catch_up_job_id, enqueue_catch_up, enqueue_issuance, job_state
from app.shopify.client import AdminAPIError, Throttled
from app.shopify.tokens import ShopNotInstalled
from app.web import rt

reconcile = AppGroup("reconcile", help="Catch-up reconciliation of paid orders the webhooks missed.")

MINUTES = Checked("integer", lambda text, name: whole_number(text, name, 1, catch_up.MAX_INTERVAL_MINUTES))


@reconcile.command("status")
@click.argument("domain")
def reconcile_status(domain: str) -> None:
    """How far catch-up has read the shop's orders, when it runs next, and its recent runs."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        cursor = session.get(ReconcileCursor, shop.id)
        state = job_state(rt().redis, catch_up_job_id(shop.id))
        shown = catch_up.status_json(cursor, state)
    runs = shown.pop("recent_runs")
    echo_table([["", ""]] + [[key, cell(value)] for key, value in shown.items()])
    click.echo("")
    if not runs:
        click.echo("no catch-up run has finished yet")
        return
    # Every recent run, not only the last: an order the scheduler recovered stays in sight.
    echo_table([["RUN FINISHED (UTC)", "PAGES", "ORDERS READ", "RECOVERED"]] + [
        [moment(run["completed_at"]), str(run["pages"]), str(run["orders"]), str(run["recovered"])]
        for run in runs])


@reconcile.command("now")
@click.argument("domain")
@click.option("--here", is_flag=True, help="run it in this process, page by page, instead of queueing it")
def reconcile_now(domain: str, here: bool) -> None:
    """Read the shop's orders updated since the cursor now (queued for a worker, or --here)."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        if not shop.is_installed:
            raise click.ClickException(f"{domain} is not installed; its orders cannot be read")
        catch_up.cursor_for(session, shop)
        shop_id = shop.id
    if not here:
        queued = enqueue_catch_up(rt().redis, shop_id)
        click.echo("catch-up queued" if queued else "catch-up is already queued or running",
                   nl=False)
        click.echo(f"; `flask reconcile status {domain}` shows its progress")
        return
    _catch_up_here(shop_id, domain)


@reconcile.command("interval")
@click.argument("domain")
@click.argument("minutes", type=MINUTES)
def reconcile_interval(domain: str, minutes: int) -> None:
    """How often catch-up runs for the shop (default 15 minutes)."""
    with rt().db.session_scope() as session:
        cursor = catch_up.set_interval(session, shop_or_fail(session, domain), minutes)
        next_run = cursor.next_run_at
    click.echo(f"catch-up for {domain} runs every {minutes} min; next by {next_run:%Y-%m-%d %H:%M} UTC")


def _catch_up_here(shop_id: int, domain: str) -> None:
    """Catch-up in this process, a line per page; waits out the bucket instead of deferring."""

    def walk_from_cursor() -> catch_up.CatchUp:  # as the worker's: buyers' emails fingerprinted for the checks
        return catch_up.CatchUp(rt().db, rt().admin_client(shop_id, domain), shop_id,
                                email_key=rt().settings.email_hash_key)

    walk = walk_from_cursor()
    pages = orders = recovered = 0
    while True:
        try:
            page = walk.page()
        except Throttled as exc:
            click.echo(f"  the store's API bucket is empty; waiting {exc.retry_after:.1f} s")
            time.sleep(exc.retry_after)
            # A client may sleep only so long in all (its wait budget); a fresh one goes on from the cursor.
            walk = walk_from_cursor()
            continue
        except (AdminAPIError, ShopNotInstalled) as exc:
            catch_up.record_error(rt().db, shop_id, f"{type(exc).__name__}: {exc}")
            raise click.ClickException(
                f"{domain}'s orders could not be read ({exc}). The pages done so far are kept: run it again "
                "to go on, or leave it to the schedule") from exc
        if page.rewards:  # advocates' reward codes reserved now: a worker issues them
            enqueue_issuance(rt().redis, shop_id)
        pages, orders, recovered = pages + 1, orders + page.orders, recovered + page.recovered
        cancelled = f", {page.cancellations} cancellations missed by webhooks" if page.cancellations else ""
        click.echo(f"  page {pages}: {page.orders} orders read, {page.reconciled} paid, "
                   f"{page.recovered} missed by webhooks, {page.redeemed} codes redeemed{cancelled}")
        if page.finished:
            break
    click.echo(f"done: {orders} orders read in {pages} pages; {recovered} had not reached us by webhook")
