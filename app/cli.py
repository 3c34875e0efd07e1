"""Operator commands: ``flask --app app <group> <command>`` (``make shell`` has the venv on PATH)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import inbox, lifecycle
from app.codes import catch_up, issuance, metrics
from app.codes import programs as program_rules
from app.errors import BadRequest, Conflict, NotFound
from app.models import (
    CODE_STATUSES,
    PROGRAM_KINDS,
    DataRequest,
    IssuedCode,
    Program,
    ReconcileCursor,
    Shop,
    WebhookEvent,
)
from app.params import parse_date, parse_id, parse_shopify_id, whole_number
from app.queues import (
    catch_up_job_id,
    delete_job,
    enqueue_catch_up,
    enqueue_event,
    enqueue_issuance,
    enqueue_revoke,
    enqueue_setup,
    job_id_for_event,
    job_state,
    setup_job_id,
)
from app.shopify.client import AdminAPIError, Throttled
from app.shopify.tokens import ShopNotInstalled
from app.web import rt


class Checked(click.ParamType):
    """A click type that parses with ``app.params``: the CLI refuses what the API refuses, in its words,
    as a usage error (exit code 2, ``Error: --limit must be …``) rather than a traceback."""

    def __init__(self, name: str, parse: Callable[[str, str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # a default, already what it should be
            return value
        shown = "the value"
        if isinstance(param, click.Option):
            shown = param.opts[0]
        elif param is not None:
            shown = param.human_readable_name
        try:
            return self.parse(value, shown)
        except BadRequest as exc:
            raise click.UsageError(str(exc), ctx) from None


MAX_ROWS = 10_000  # a listing's --limit: more would not be read on a terminal
ID = Checked("id", parse_id)  # one of our rows
SHOPIFY_ID = Checked("shopify_id", parse_shopify_id)
ROWS = Checked("integer", lambda text, name: whole_number(text, name, 1, MAX_ROWS))
DAY = Checked("date", parse_date)
MINUTES = Checked("integer", lambda text, name: whole_number(text, name, 1, catch_up.MAX_INTERVAL_MINUTES))


def _usage_error(exc: BadRequest) -> click.UsageError:
    """A ``BadRequest`` from the domain, shown as the CLI's usage error (exit code 2)."""
    return click.UsageError(str(exc))


def _shop_or_fail(session, domain: str) -> Shop:  # type: ignore[no-untyped-def]
    shop = lifecycle.shop_by_domain(session, domain)
    if shop is None:
        raise click.ClickException(f"no shop {domain!r}; `flask shops list` shows the known ones")
    return shop


def _program_or_fail(session: Session, shop: Shop, which: str) -> Program:
    """A program named by kind (``welcome``) or, for the several ``manual`` ones, by id."""
    query = select(Program).where(Program.shop_id == shop.id)
    if which.isascii() and which.isdigit():
        try:
            query = query.where(Program.id == parse_id(which, "a program id"))
        except BadRequest as exc:
            raise _usage_error(exc) from None
    elif which in PROGRAM_KINDS:
        query = query.where(Program.kind == which)
    else:
        raise click.ClickException(f"{which!r} is neither a program kind ({', '.join(PROGRAM_KINDS)}) nor an id")
    found = session.scalars(query).all()
    if not found:
        raise click.ClickException(f"{shop.domain} has no program {which}; `flask programs list {shop.domain}` "
                                   "shows its programs")
    if len(found) > 1:
        raise click.ClickException(f"{shop.domain} has {len(found)} {which} programs; give the id instead")
    return found[0]


TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
NONE_WORDS = ("none", "null", "")


def _cli_changes(assignments: tuple[str, ...]) -> dict[str, Any]:
    """``FIELD=VALUE`` strings as the JSON values ``update_program`` takes.

    Only the type is converted here; a word that does not convert is passed on as it is, so that
    ``update_program`` refuses it with the same message the API gives.
    """
    changes: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep or not name:
            raise click.ClickException(f"expected FIELD=VALUE, got {assignment!r}")
        if name in changes:
            raise click.ClickException(f"{name} is given twice")
        changes[name] = _cli_value(program_rules.FIELDS.get(name), text)
    return changes


def _cli_value(field: program_rules.Field | None, text: str) -> Any:
    word = text.strip().lower()
    if field is None:
        return text
    if field.nullable and word in NONE_WORDS:
        return None
    if field.type == "bool":
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else text
    # ASCII, and short enough for int() (which refuses 4,300 digits); update_program bounds the value.
    if field.type == "int" and re.fullmatch(r"[+-]?[0-9]{1,20}", word):
        return int(word)
    return text


def _program_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    table = [["ID", "KIND", "NAME", "ACTIVE", "VALUE", "MINIMUM", "EXPIRES", "LOCKED", "COMBINES WITH",
              "EXAMPLE CODE"]]
    for p in rows:
        value = {"percentage": f"{p['value']} %", "fixed_amount": f"{p['value']} off"}.get(p["value_type"],
                                                                                           "free shipping")
        combines = [kind.removesuffix("_discounts") for kind, on in p["combines_with"].items() if on]
        days = p["expires_after_days"]
        table.append([str(p["id"]), p["kind"], p["name"], "on" if p["active"] else "off", value,
                      p["minimum_subtotal"] or "-", f"{days} days" if days else "never",
                      "yes" if p["lock_to_customer"] else "no", ", ".join(combines) or "-",
                      p["code_format"]["example"]])
    return table


def _echo_table(table: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def register_cli(app: Flask) -> None:
    shops = AppGroup("shops", help="Installed shops.")
    events = AppGroup("events", help="The webhook inbox.")
    data_requests = AppGroup("data-requests", help="customers/data_request exports.")
    tokens = AppGroup("tokens", help="Stored access tokens.")
    programs = AppGroup("programs", help="A shop's discount programs (welcome, referral, manual).")

    @shops.command("list")
    def shops_list() -> None:
        """Every shop with its install and set-up state."""
        with rt().db.session_scope() as session:
            shops = list(session.scalars(select(Shop).order_by(Shop.domain)))
            live = metrics.codes_on_store(session, [shop.id for shop in shops])
            for shop in shops:
                state = "installed" if shop.is_installed else "uninstalled"
                setup = ("set up" if shop.setup_completed_at else
                         f"setup failed: {shop.setup_error}" if shop.setup_error else "setting up")
                expiry = shop.access_token_expires_at.isoformat() if shop.access_token_expires_at else "-"
                on_store = live.get(shop.id, 0)
                click.echo(f"{shop.domain}\t{state}\t{setup}\ttoken expires {expiry}\t"
                           f"{_count(on_store, 'code')} on the store" + _cap_note(on_store))

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
            event = session.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))
            if event is None:
                raise click.ClickException(f"no event {event_id!r}")
            if event.status != "failed":
                raise click.ClickException(f"event is {event.status}; only failed events are retried")
            if event.payload is None:
                raise click.ClickException("event has no payload left (redacted or malformed); nothing to run")
            event.status, event.last_error = "pending", None
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
    @click.argument("request_id", type=ID)
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

    @programs.command("list")
    @click.argument("domain")
    def programs_list(domain: str) -> None:
        """A shop's programs, with an example code in each one's format."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            rows = [program_rules.program_json(p) for p in program_rules.shop_programs(session, shop.id)]
        if not rows:
            click.echo(f"{domain} has no programs yet; `flask shops setup {domain}` creates the defaults")
            return
        _echo_table(_program_rows(rows))

    @programs.command("set")
    @click.argument("domain")
    @click.argument("which", metavar="KIND")
    @click.argument("assignments", metavar="FIELD=VALUE...", nargs=-1, required=True)
    def programs_set(domain: str, which: str, assignments: tuple[str, ...]) -> None:
        """Change a program, e.g. `set DOMAIN welcome value=15 active=true code_prefix=HELLO-`.

        KIND is welcome, referral_friend or referral_reward (or a program id). Fields: name, active,
        value_type, value, minimum_subtotal, expires_after_days, lock_to_customer, combines_with_product,
        combines_with_order, combines_with_shipping, code_prefix, code_length, code_alphabet, code_pattern,
        redirect_path. Booleans take true/false (yes/no, on/off); `none` clears minimum_subtotal,
        expires_after_days, code_pattern and redirect_path. Codes already issued keep their old terms.
        """
        changes = _cli_changes(assignments)
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            program = _program_or_fail(session, shop, which)
            try:
                program = program_rules.update_program(session, shop.id, program.id, changes)
            except (BadRequest, NotFound) as exc:
                raise click.ClickException(str(exc)) from exc
            shown = program_rules.program_json(program)
        click.echo(json.dumps(shown, indent=2))

    codes = AppGroup("codes", help="Issued codes: list, issue by hand, revoke, retry.")

    @codes.command("list")
    @click.argument("domain")
    @click.option("--status", type=click.Choice((*CODE_STATUSES, "open")), help="open: usable now")
    @click.option("--program", "which", metavar="KIND|ID", help="only this program's codes")
    @click.option("--customer", type=SHOPIFY_ID, metavar="SHOPIFY_ID", help="only this customer's codes")
    @click.option("--limit", type=ROWS, default=50, show_default=True, help=f"at most {MAX_ROWS}")
    def codes_list(domain: str, status: str | None, which: str | None, customer: int | None, limit: int) -> None:
        """A shop's codes, newest first, with the reason for any failure."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            program_id = _program_or_fail(session, shop, which).id if which else None
            rows = issuance.list_codes(session, shop.id, status=status, program_id=program_id,
                                       shopify_customer_id=customer, limit=limit)
        if not rows:
            click.echo(f"{domain} has no codes{' like that' if status or which or customer else ' yet'}")
            return
        table = [["ID", "CODE", "STATUS", "PROGRAM", "CUSTOMER", "ISSUED", "EXPIRES", "ERROR"]]
        for row, program, shopify_id in rows:
            expires = f"{row.expires_at:%Y-%m-%d}" if row.expires_at else "never"
            table.append([str(row.id), row.code, row.status, program.kind, str(shopify_id or "-"),
                          f"{row.issued_at:%Y-%m-%d %H:%M}", expires, row.last_error or ""])
        _echo_table(table)

    @codes.command("show")
    @click.argument("domain")
    @click.argument("code")
    def codes_show(domain: str, code: str) -> None:
        """One code (by its id or the code itself) as JSON, with its link."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            row = _code_or_fail(session, shop, code)
            click.echo(json.dumps(issuance.describe_code(session, rt().settings, shop.id, shop.domain, row), indent=2))

    @codes.command("issue")
    @click.argument("domain")
    @click.argument("which", metavar="PROGRAM")
    @click.argument("customer", type=SHOPIFY_ID, metavar="SHOPIFY_CUSTOMER_ID")
    @click.option("--key", help="an idempotency key: the same key again issues nothing more")
    @click.option("--wait", type=click.FloatRange(0, 3600), default=0.0, metavar="SECONDS",
                  help="wait for the code to be attached, showing progress")
    def codes_issue(domain: str, which: str, customer: int, key: str | None, wait: float) -> None:
        """Issue a code of PROGRAM (a kind or a program id) to a customer by hand."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            if not shop.is_installed:
                raise click.ClickException(f"{domain} is not installed; codes cannot reach its store")
            program = _program_or_fail(session, shop, which)
            row, new = issuance.issue_by_hand(session, shop.id, program.id, customer, key)
            shop_id, code_id, status = shop.id, row.id, row.status
        if status in ("reserved", "created"):
            enqueue_issuance(rt().redis, shop_id)
        click.echo(f"code {code_id} {'reserved' if new else 'exists already'}: {row.code} ({status})")
        if wait > 0:
            status = _wait_for_code(shop_id, code_id, status, wait)
            if status == "failed":
                # A script waiting for the code must not take a failure for success.
                raise click.ClickException(f"code {code_id} was not issued; `flask codes retry {domain} {code_id}` "
                                           "issues it again once the cause is fixed")
            if status in ("reserved", "created"):
                raise click.ClickException(f"code {code_id} is still {status} after {wait:g} s: is a worker "
                                           f"running? (`flask codes show {domain} {code_id}` tells later)")

    @codes.command("revoke")
    @click.argument("domain")
    @click.argument("code")
    def codes_revoke(domain: str, code: str) -> None:
        """Revoke a code (by id or code): it stops working on the store."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            try:
                row = issuance.request_revoke(session, shop.id, _code_or_fail(session, shop, code).id)
            except Conflict as exc:
                raise click.ClickException(str(exc)) from exc
            shop_id, code_id, done = shop.id, row.id, issuance.revoke_done(row)
        if done:
            click.echo(f"code {code_id} was revoked and deactivated already")
        else:
            queued = enqueue_revoke(rt().redis, shop_id, code_id)
            click.echo(f"code {code_id} revoked; {'deactivation queued' if queued else 'the sweep will deactivate it'}")

    @codes.command("retry")
    @click.argument("domain")
    @click.argument("code")
    def codes_retry(domain: str, code: str) -> None:
        """Issue a failed code again (after fixing what made it fail)."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            try:
                row = issuance.request_retry(session, shop.id, _code_or_fail(session, shop, code).id)
            except Conflict as exc:
                raise click.ClickException(str(exc)) from exc
            shop_id, code_id = shop.id, row.id
        enqueue_issuance(rt().redis, shop_id)
        click.echo(f"code {code_id} is on its way again")

    @app.cli.command("metrics")
    @click.argument("domain")
    @click.option("--from", "first", type=DAY, metavar="YYYY-MM-DD",
                  help="first day (the store's); default 29 days before --to")
    @click.option("--to", "last", type=DAY, metavar="YYYY-MM-DD", help="last day, included; default today")
    @click.option("--program", "which", metavar="KIND|ID", help="only this program's codes")
    @click.option("--daily", is_flag=True, help="also print the figures day by day")
    @click.option("--json", "as_json", is_flag=True, help="print the API's JSON instead of tables")
    def metrics_report(domain: str, first: date | None, last: date | None, which: str | None, daily: bool,
                       as_json: bool) -> None:
        """What a shop's codes earned: issued, redeemed, rate, revenue, discount, order values; and its
        referral loop: link clicks, friend codes, friend orders, referred revenue, rewards, top advocates."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            program_id = _program_or_fail(session, shop, which).id if which else None
            try:
                report = metrics.shop_metrics(session, shop.id, metrics.Period.of_shop(shop, first, last),
                                              program_id=program_id, daily=daily or as_json)
            except BadRequest as exc:  # the range as a whole: from after to, or too long
                raise _usage_error(exc) from None
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        _echo_metrics(domain, report, daily)

    reconcile = AppGroup("reconcile", help="Catch-up reconciliation of paid orders the webhooks missed.")

    @reconcile.command("status")
    @click.argument("domain")
    def reconcile_status(domain: str) -> None:
        """How far catch-up has read the shop's orders, when it runs next, and its recent runs."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
            cursor = session.get(ReconcileCursor, shop.id)
            state = job_state(rt().redis, catch_up_job_id(shop.id))
            shown = catch_up.status_json(cursor, state)
        runs = shown.pop("recent_runs")
        _echo_table([["", ""]] + [[key, _cell(value)] for key, value in shown.items()])
        click.echo("")
        if not runs:
            click.echo("no catch-up run has finished yet")
            return
        # Every recent run, not only the last: an order the scheduler recovered stays in sight.
        _echo_table([["RUN FINISHED (UTC)", "PAGES", "ORDERS READ", "RECOVERED"]] + [
            [_moment(run["completed_at"]), str(run["pages"]), str(run["orders"]), str(run["recovered"])]
            for run in runs])

    @reconcile.command("now")
    @click.argument("domain")
    @click.option("--here", is_flag=True, help="run it in this process, page by page, instead of queueing it")
    def reconcile_now(domain: str, here: bool) -> None:
        """Read the shop's orders updated since the cursor now (queued for a worker, or --here)."""
        with rt().db.session_scope() as session:
            shop = _shop_or_fail(session, domain)
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
            cursor = catch_up.set_interval(session, _shop_or_fail(session, domain), minutes)
            next_run = cursor.next_run_at
        click.echo(f"catch-up for {domain} runs every {minutes} min; next by {next_run:%Y-%m-%d %H:%M} UTC")

    for group in (shops, events, data_requests, tokens, programs, codes, reconcile):
        app.cli.add_command(group)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{key} {_cell(item)}" for key, item in value.items()) or "-"
    return str(value)


def _moment(iso: str | None) -> str:
    return "-" if iso is None else iso[:19].replace("T", " ")


def _money(amounts: dict[str, str], currency: str | None) -> str:
    """Amounts with their currency codes; nothing is zero in the store's currency (``-`` before any order)."""
    shown = ", ".join(f"{amount} {code}" for code, amount in amounts.items())
    return shown or (f"0.00 {currency}" if currency else "-")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _cap_note(on_store: int) -> str:
    """`` (WARNING: ...)`` when a shop's codes on its store near Shopify's cap, else nothing."""
    if metrics.cap_warning(on_store) is None:
        return ""
    return f" (WARNING: {on_store / metrics.STORE_CODE_CAP * 100:.1f} % of Shopify's cap of {metrics.STORE_CODE_CAP:,})"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


def _echo_metrics(domain: str, report: dict[str, Any], daily: bool) -> None:
    totals = report["totals"]

    def money(amounts: dict[str, str]) -> str:
        return _money(amounts, report["currency"])

    click.echo(f"{domain}, {report['from']} to {report['to']} ({report['time_zone']})\n")
    aov = totals["average_order_value"]
    _echo_table([
        ["METRIC", "VALUE"],
        ["codes issued", str(totals["codes_issued"])],
        ["codes redeemed", str(totals["codes_redeemed"])],
        ["redemption rate", f"{_rate(totals['redemption_rate'])} ({totals['redeemed_of_issued']} of the issued)"],
        ["median time to redemption", _duration(totals["median_seconds_to_redemption"])],
        ["orders with our codes", str(totals["orders_with_codes"])],
        ["revenue of those orders", money(totals["revenue"])],
        ["discount given", money(totals["discount_given"])],
        ["average order, with codes", money(aov["with_codes"])],
        ["average order, without",
         f"{money(aov['without_codes'])} ({_count(totals['orders_without_codes'], 'order')})"],
        ["anomalies (code used twice)", str(totals["anomalies"])],
        ["codes on the store now", f"{report['store']['codes_on_store']:,} of Shopify's {report['store']['cap']:,} "
                                   f"({_rate(report['store']['share_of_cap'])})"],
    ])
    if report["store"]["warning"]:
        click.echo(f"\nWARNING: {report['store']['warning']} (STORE_CLEANUP_GRACE_DAYS sets how long expired and "
                   "revoked codes stay before the clean-up removes them.)")
    click.echo("")
    _echo_table([["PROGRAM", "ISSUED", "REDEEMED", "RATE", "MEDIAN", "ORDERS", "REVENUE", "DISCOUNT"]] + [
        [p["name"], str(p["codes_issued"]), str(p["codes_redeemed"]), _rate(p["redemption_rate"]),
         _duration(p["median_seconds_to_redemption"]), str(p["orders_with_codes"]), money(p["revenue"]),
         money(p["discount_given"])] for p in report["programs"]])
    if daily:
        click.echo("")
        _echo_table([["DAY", "ISSUED", "REDEEMED", "ORDERS", "REVENUE", "DISCOUNT"]] + [
            [d["date"], str(d["codes_issued"]), str(d["codes_redeemed"]), str(d["orders_with_codes"]),
             money(d["revenue"]), money(d["discount_given"])] for d in report["daily"]])
    if report["referrals"] is not None:
        _echo_referrals(report, daily, money)


def _echo_referrals(report: dict[str, Any], daily: bool, money: Callable[[dict[str, str]], str]) -> None:
    """The referral loop of a metrics report: the funnel, the top advocates and, with ``daily``, its days."""
    loop = report["referrals"]
    rewards = loop["rewards"]
    conversion = "no friend codes" if loop["conversion"] is None else f"{_rate(loop['conversion'])} of the friend codes"
    click.echo("")
    _echo_table([
        ["REFERRALS", "VALUE"],
        ["link clicks", f"{loop['link_clicks']} ({_count(loop['unique_visitors'], 'unique visitor')})"],
        ["friend codes handed out", str(loop["friend_codes"])],
        ["friend orders", f"{loop['friend_orders']} ({conversion})"],
        ["referred revenue", money(loop["referred_revenue"])],
        ["rewarded revenue", money(loop["rewarded_revenue"])],
        ["rewards", ", ".join(f"{rewards[state]} {state}" for state in ("pending", "issued", "voided", "blocked"))],
        ["voided because", _cell(loop["voided_reasons"])],
        ["blocked because", _cell(loop["blocked_reasons"])],
    ])
    click.echo("")
    if loop["top_advocates"]:
        _echo_table([["ADVOCATE (CUSTOMER ID)", "LINK", "FRIEND ORDERS", "REWARDED", "REVENUE"]] + [
            [str(a["customer_id"]), str(a["link_id"]), str(a["friend_orders"]), str(a["rewarded"]),
             money(a["revenue"])] for a in loop["top_advocates"]])
    else:
        click.echo("no advocate brought a friend order in this range")
    if daily:
        click.echo("")
        _echo_table([["DAY", "CLICKS", "VISITORS", "FRIEND CODES", "FRIEND ORDERS", "REWARDS ISSUED", "REVENUE"]] + [
            [d["date"], str(r["link_clicks"]), str(r["unique_visitors"]), str(r["friend_codes"]),
             str(r["friend_orders"]), str(r["rewards_issued"]), money(r["referred_revenue"])]
            for d in report["daily"] for r in (d["referrals"],)])


def _catch_up_here(shop_id: int, domain: str) -> None:
    """Catch-up in this process, a line per page; waits out the bucket instead of deferring."""
    walk = catch_up.CatchUp(rt().db, rt().admin_client(shop_id, domain), shop_id)
    pages = orders = recovered = 0
    while True:
        try:
            page = walk.page()
        except Throttled as exc:
            click.echo(f"  the store's API bucket is empty; waiting {exc.retry_after:.1f} s")
            time.sleep(exc.retry_after)
            # A client may sleep only so long in all (its wait budget); a fresh one goes on from the cursor.
            walk = catch_up.CatchUp(rt().db, rt().admin_client(shop_id, domain), shop_id)
            continue
        except (AdminAPIError, ShopNotInstalled) as exc:
            catch_up.record_error(rt().db, shop_id, f"{type(exc).__name__}: {exc}")
            raise click.ClickException(
                f"{domain}'s orders could not be read ({exc}). The pages done so far are kept: run it again "
                "to go on, or leave it to the schedule") from exc
        pages, orders, recovered = pages + 1, orders + page.orders, recovered + page.recovered
        click.echo(f"  page {pages}: {page.orders} orders read, {page.reconciled} paid, "
                   f"{page.recovered} missed by webhooks, {page.redeemed} codes redeemed")
        if page.finished:
            break
    click.echo(f"done: {orders} orders read in {pages} pages; {recovered} had not reached us by webhook")


def _code_or_fail(session: Session, shop: Shop, which: str) -> IssuedCode:
    """A code by the code itself (any case), or else by its id."""
    try:
        return issuance.get_code(session, shop.id, which)
    except NotFound:
        if which.isascii() and which.isdigit():
            try:
                return issuance.get_code(session, shop.id, parse_id(which, "a code id"))
            except NotFound:
                pass
            except BadRequest as exc:
                raise _usage_error(exc) from None
    raise click.ClickException(f"{shop.domain} has no code {which!r}; `flask codes list {shop.domain}` shows them")


def _wait_for_code(shop_id: int, code_id: int, status: str, seconds: float) -> str:
    """Print each status the code goes through until it settles or ``seconds`` pass; the last one seen."""
    deadline = time.monotonic() + seconds
    while status in ("reserved", "created") and time.monotonic() < deadline:
        time.sleep(0.25)
        with rt().db.session_scope() as session:
            row = session.get_one(IssuedCode, code_id)
            if row.status != status:
                status = row.status
                click.echo(f"  {status}" + (f": {row.last_error}" if row.last_error else ""))
    return status
