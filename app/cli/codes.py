"""``flask codes list|show|issue|revoke|retry``: a shop's issued codes (``app.codes.issuance``) — listed with
the reason for any failure, issued to a customer by hand, revoked, or issued again after a failure."""

from __future__ import annotations

import json
import time

import click
from flask.cli import AppGroup
from sqlalchemy.orm import Session

from app.cli.common import (
    IDEMPOTENCY_KEY,
    MAX_ROWS,
    ROWS,
    SHOPIFY_ID,
    TAKES_DASHED_VALUES,
    echo_table,
    program_or_fail,
    shop_or_fail,
    usage_error,
)
from app.codes import code_actions, issuance
from app.errors import BadRequest, Conflict, NotFound
from app.models import CODE_STATUSES, IssuedCode, Shop
from app.params import parse_id
from app.web import rt

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
        shop = shop_or_fail(session, domain)
        program_id = program_or_fail(session, shop, which).id if which else None
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
    echo_table(table)


@codes.command("show", context_settings=TAKES_DASHED_VALUES)
@click.argument("domain")
@click.argument("code")
def codes_show(domain: str, code: str) -> None:
    """One code (by its id or the code itself) as JSON, with its link."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        row = _code_or_fail(session, shop, code)
        click.echo(json.dumps(issuance.describe_code(session, rt().settings, shop.id, shop.domain, row), indent=2))


@codes.command("issue")
@click.argument("domain")
@click.argument("which", metavar="PROGRAM")
@click.argument("customer", type=SHOPIFY_ID, metavar="SHOPIFY_CUSTOMER_ID")
@click.option("--key", type=IDEMPOTENCY_KEY,
              help="an idempotency key (1 to 100 characters): the same key again issues nothing more")
@click.option("--wait", type=click.FloatRange(0, 3600), default=0.0, metavar="SECONDS",
              help="wait for the code to be attached, showing progress")
def codes_issue(domain: str, which: str, customer: int, key: str | None, wait: float) -> None:
    """Issue a code of PROGRAM (a kind or a program id) to a customer by hand."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        if not shop.is_installed:
            raise click.ClickException(f"{domain} is not installed; codes cannot reach its store")
        program = program_or_fail(session, shop, which)
        row, new = code_actions.issue(session, rt().redis, shop.id, program.id, customer, key)
        shop_id, code_id, status = shop.id, row.id, row.status
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


@codes.command("revoke", context_settings=TAKES_DASHED_VALUES)
@click.argument("domain")
@click.argument("code")
def codes_revoke(domain: str, code: str) -> None:
    """Revoke a code (by id or code): it stops working on the store."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        try:
            row, done, queued = code_actions.revoke(session, rt().redis, shop.id,
                                                    _code_or_fail(session, shop, code).id)
        except Conflict as exc:
            raise click.ClickException(str(exc)) from exc
        code_id = row.id
    if done:
        click.echo(f"code {code_id} was revoked and deactivated already")
    else:
        click.echo(f"code {code_id} revoked; {'deactivation queued' if queued else 'the sweep will deactivate it'}")


@codes.command("retry", context_settings=TAKES_DASHED_VALUES)
@click.argument("domain")
@click.argument("code")
def codes_retry(domain: str, code: str) -> None:
    """Issue a failed code again (after fixing what made it fail)."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        try:
            row = code_actions.retry(session, rt().redis, shop.id, _code_or_fail(session, shop, code).id)
        except Conflict as exc:
            raise click.ClickException(str(exc)) from exc
        code_id = row.id
    click.echo(f"code {code_id} is on its way again")


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
                raise usage_error(exc) from None
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
