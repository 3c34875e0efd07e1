"""``flask --app app referrals settings|list SHOP``: every referral setting, and the referrals recorded,
commands of the one ``referrals`` group (``app.cli.referrals``).

The same domain functions as the API (``app.codes.referral_settings``, ``referral_list``); bad input is a
usage error (exit 2) naming every problem, a shop or program that does not exist an error (exit 1).
"""

from __future__ import annotations

import click

from app.cli.common import ID, MAX_ROWS, ROWS, shop_or_fail
from app.cli.referral_pools import _settings
from app.cli.referrals import CUSTOMER_ID
from app.cli.referrals import referrals_cli as referrals
from app.codes import referral_list, referral_settings
from app.errors import BadRequest, NotFound
from app.models import REFERRAL_STATUSES
from app.web import rt

BOOLEANS = {"true": True, "false": False}


def _changes(assignments: tuple[str, ...]) -> dict[str, object]:
    """``SETTING=VALUE`` as JSON would give it: whole numbers (ASCII digits) as ints, ``true``/``false``
    as booleans, anything else as text for the domain to refuse by name."""
    return {name: BOOLEANS.get(value, value) if isinstance(value, str) else value
            for name, value in _settings(assignments).items()}


def _shown(value: bool | int) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@referrals.command("settings")
@click.argument("domain")
@click.argument("assignments", nargs=-1, metavar="[SETTING=VALUE]...")
def settings(domain: str, assignments: tuple[str, ...]) -> None:
    """Show every referral setting, or change some (e.g. ``hold_days=7 first_order_only=false``).

    All or nothing: a bad value changes nothing and names every problem. Booleans are true or false;
    0 turns a cap off.
    """
    changes = _changes(assignments)
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        try:
            shown = (referral_settings.update_settings(session, shop.id, changes) if changes
                     else referral_settings.settings_json(session, shop.id))
        except BadRequest as exc:
            raise click.UsageError(str(exc)) from None
        except NotFound as exc:
            raise click.ClickException(f"{domain}: {exc}") from None
    width = max(len(name) for name in shown)
    values = {name: _shown(value) for name, value in shown.items()}
    value_width = max(len(value) for value in values.values())
    for name, value in values.items():
        mark = "*" if name in changes else " "
        click.echo(f"{mark} {name.ljust(width)}  {value.ljust(value_width)}  "
                   f"{referral_settings.SETTINGS[name].meaning}")
    if changes:
        click.echo(f"(* set: {', '.join(changes)})")


@referrals.command("list")
@click.argument("domain")
@click.option("--status", type=click.Choice(REFERRAL_STATUSES))
@click.option("--link", type=ID, metavar="LINK_ID", help="only the referrals of this link (its id)")
@click.option("--customer", type=CUSTOMER_ID, metavar="CUSTOMER_ID", help="only this advocate's (Shopify id)")
@click.option("--limit", type=ROWS, default=50, show_default=True, help=f"at most {MAX_ROWS}")
def referral_rows(domain: str, status: str | None, link: int | None, customer: int | None, limit: int) -> None:
    """A shop's referrals, newest first: each paid order that used a friend code, and what became of it."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        rows = [referral_list.referral_json(row) for row in referral_list.list_referrals(
            session, shop.id, status=status, link_id=link, advocate=customer, limit=limit)]
    if not rows:
        click.echo(f"{domain} has no referrals{' like that' if status or link or customer else ' yet'}")
        return
    table = [["ID", "STATUS", "ORDER", "TOTAL", "FRIEND CODE", "LINK", "ADVOCATE", "ORDERED", "HOLD UNTIL",
              "REWARD", "WHY"]]
    for row in rows:
        table.append([
            str(row["id"]), row["status"], row["order"]["name"], f"{row['total']} {row['currency']}",
            row["friend_code"], str(row["link_id"] or "-"), str(row["advocate_customer_id"] or "-"),
            _moment(row["ordered_at"]), _moment(row["hold_until"]),
            row["reward_code"]["code"] or "-" if row["reward_code"] else "-",
            row["explanation"] if row["status"] != "rewarded" else "",
        ])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip())


def _moment(iso: str | None) -> str:
    return (iso or "-")[:16].replace("T", " ")
