"""What the command groups share: input types that parse with ``app.params`` (bad input is a usage error,
exit code 2, one ``Error:`` line), the shop and program lookups, and how values and tables are printed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import lifecycle
from app.errors import BadRequest
from app.models import PROGRAM_KINDS, Program, Shop
from app.params import idempotency_key, is_utf8, parse_date, parse_id, parse_shopify_id, shown, whole_number

# For commands whose argument is a code or a link token: both may begin with "-" (a link token is
# URL-safe base64, so one in 64 does), which click would otherwise take for an unknown option (exit 2).
# Those commands have no options but --help, which still works.
TAKES_DASHED_VALUES = {"ignore_unknown_options": True}


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
IDEMPOTENCY_KEY = Checked("text", idempotency_key)


def refuse_undecodable_arguments(command: click.Command) -> click.Command:
    """Make ``command`` (a group: its subcommands' arguments too) refuse an argument that is not UTF-8
    text, as a usage error.

    Python decodes a command line's bytes that are not UTF-8 (a Latin-1 terminal, a stray byte pasted)
    to lone surrogates, which neither the database nor the terminal can encode: the command ended in a
    traceback wherever the text was first used (a shop's domain, a code, a program's name).
    """
    parse_args = command.parse_args

    def checked(ctx: click.Context, args: list[str]) -> list[str]:
        for arg in args:
            if not is_utf8(arg):
                raise click.UsageError(f"the argument {shown(arg)} is not UTF-8 text (check the terminal's "
                                       "encoding)", ctx)
        return parse_args(ctx, args)

    command.parse_args = checked  # type: ignore[method-assign]
    return command


def usage_error(exc: BadRequest) -> click.UsageError:
    """A ``BadRequest`` from the domain, shown as the CLI's usage error (exit code 2)."""
    return click.UsageError(str(exc))


def shop_or_fail(session: Session, domain: str) -> Shop:
    shop = lifecycle.shop_by_domain(session, domain)
    if shop is None:
        raise click.ClickException(f"no shop {domain!r}; `flask shops list` shows the known ones")
    return shop


def program_or_fail(session: Session, shop: Shop, which: str) -> Program:
    """A program named by kind (``welcome``) or, for the several ``manual`` ones, by id."""
    query = select(Program).where(Program.shop_id == shop.id)
    if which.isascii() and which.isdigit():
        try:
            query = query.where(Program.id == parse_id(which, "a program id"))
        except BadRequest as exc:
            raise usage_error(exc) from None
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


def echo_table(table: list[list[str]]) -> None:
    """Rows of cells in aligned columns, the first row being the headings."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip())


def cell(value: Any) -> str:
    """A JSON value in a table cell: ``-`` for none, a dict as ``key value, …``."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{key} {cell(item)}" for key, item in value.items()) or "-"
    return str(value)


def count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def money(amounts: dict[str, str], currency: str | None) -> str:
    """Amounts with their currency codes; nothing is zero in the store's currency (``-`` before any order)."""
    shown = ", ".join(f"{amount} {code}" for code, amount in amounts.items())
    return shown or (f"0.00 {currency}" if currency else "-")


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


def moment(iso: str | None) -> str:
    """An ISO timestamp to the second, as ``YYYY-MM-DD HH:MM:SS``."""
    return "-" if iso is None else iso[:19].replace("T", " ")
