"""``flask programs list|set``: a shop's discount programs (``app.codes.programs``), shown with an example
code, and changed field by field with the API's rules and messages."""

from __future__ import annotations

import json
import re
from typing import Any

import click
from flask.cli import AppGroup

from app.cli.common import echo_table, program_or_fail, shop_or_fail
from app.codes import programs as program_rules
from app.errors import BadRequest, NotFound
from app.web import rt

programs = AppGroup("programs", help="A shop's discount programs (welcome, referral, manual).")

TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
NONE_WORDS = ("none", "null", "")


@programs.command("list")
@click.argument("domain")
def programs_list(domain: str) -> None:
    """A shop's programs, with an example code in each one's format."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        rows = [program_rules.program_json(p) for p in program_rules.shop_programs(session, shop.id)]
    if not rows:
        click.echo(f"{domain} has no programs yet; `flask shops setup {domain}` creates the defaults")
        return
    echo_table(_program_rows(rows))


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
        shop = shop_or_fail(session, domain)
        program = program_or_fail(session, shop, which)
        try:
            program = program_rules.update_program(session, shop.id, program.id, changes)
        except (BadRequest, NotFound) as exc:
            raise click.ClickException(str(exc)) from exc
        shown = program_rules.program_json(program)
    click.echo(json.dumps(shown, indent=2))


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
