"""``flask --app app referrals …``: customers' referral links from the command line.

The same domain functions as the API (``app.codes.referrals``); bad input is a usage error (exit 2)
naming the problem, a link or shop that does not exist an error (exit 1).
"""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.cli.common import MAX_ROWS, ROWS, TAKES_DASHED_VALUES, Checked, shop_or_fail
from app.codes import referrals
from app.errors import BadRequest, NotFound
from app.models import LINK_STATUSES
from app.queues import enqueue_referral_link
from app.web import rt

referrals_cli = AppGroup("referrals",
                         help="The referral program: customers' links (create, list, retire) and friend code pools.")


# The API's rules, as usage errors (exit code 2) naming the argument.
CUSTOMER_ID = Checked("shopify_customer_id", referrals.shopify_customer_id)


def _queue(shop_id: int, link_id: int, status: str) -> str:
    if enqueue_referral_link(rt().redis, shop_id, link_id, status):
        return "metafield job queued"
    return "metafield job already on its way (or the sweep queues it shortly)"


@referrals_cli.command("link")
@click.argument("domain")
@click.argument("customer", type=CUSTOMER_ID, metavar="CUSTOMER_ID")
def link(domain: str, customer: int) -> None:
    """The referral link of a customer (their Shopify id), made now unless they have one."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        if not shop.is_installed:
            raise click.ClickException(f"{domain} is not installed; the link could not reach its customer")
        found, new = referrals.create_link(session, shop.id, customer)
        shown = referrals.link_json(found, rt().settings, customer)
        shop_id, synced = shop.id, found.synced_at is not None
    note = "" if synced else "; " + _queue(shop_id, shown["id"], shown["status"])  # type: ignore[arg-type]
    click.echo(f"link {shown['id']} {'created' if new else 'exists already'} for customer {customer}: "
               f"{shown['url']}{note}")


@referrals_cli.command("retire", context_settings=TAKES_DASHED_VALUES)
@click.argument("domain")
@click.argument("which", metavar="TOKEN_OR_CUSTOMER_ID")
def retire(domain: str, which: str) -> None:
    """Retire a link, by its token or its customer's Shopify id: it lands on "no longer active"."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        try:
            found = referrals.find_link(session, shop.id, which)
        except BadRequest as exc:
            raise click.UsageError(str(exc)) from None
        except NotFound as exc:
            raise click.ClickException(str(exc)) from exc
        retired = referrals.retire(session, found)
        shop_id, link_id, status, synced = shop.id, found.id, found.status, found.synced_at is not None
    if not retired:
        click.echo(f"link {link_id} was retired already")
        return
    click.echo(f"link {link_id} retired" + ("" if synced else "; " + _queue(shop_id, link_id, status)))


@referrals_cli.command("links")
@click.argument("domain")
@click.option("--status", type=click.Choice(LINK_STATUSES))
@click.option("--customer", type=CUSTOMER_ID, metavar="CUSTOMER_ID", help="only this customer's links")
@click.option("--limit", type=ROWS, default=50, show_default=True, help=f"at most {MAX_ROWS}")
def links(domain: str, status: str | None, customer: int | None, limit: int) -> None:
    """A shop's referral links, newest first, with their clicks and any error."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        rows = [referrals.link_json(found, rt().settings, shopify_id) for found, shopify_id in referrals.list_links(
            session, shop.id, status=status, shopify_customer_id=customer, limit=limit)]
    if not rows:
        click.echo(f"{domain} has no referral links{' like that' if status or customer else ' yet'}")
        return
    table = [["ID", "CUSTOMER", "STATUS", "CLICKS", "CREATED", "RETIRED", "METAFIELD", "URL", "ERROR"]]
    for row in rows:
        table.append([str(row["id"]), str(row["customer_id"] or "-"), row["status"], str(row["clicks"]),
                      row["created_at"][:16].replace("T", " "),
                      (row["retired_at"] or "-")[:16].replace("T", " "),
                      row["metafield"], row["url"], row["error"] or ""])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip())
