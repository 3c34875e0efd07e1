"""``flask metrics DOMAIN``: what a shop's codes earned (``app.codes.metrics``), as tables or the API's JSON;
with the referral loop's funnel and top advocates when the shop has a referral program."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

import click
from flask.cli import with_appcontext

from app.cli.common import (
    DAY,
    cell,
    count,
    duration,
    echo_table,
    money,
    program_or_fail,
    rate,
    shop_or_fail,
    usage_error,
)
from app.codes import metrics
from app.errors import BadRequest
from app.web import rt


@click.command("metrics")
@with_appcontext
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
        shop = shop_or_fail(session, domain)
        program_id = program_or_fail(session, shop, which).id if which else None
        try:
            report = metrics.shop_metrics(session, shop.id, metrics.Period.of_shop(shop, first, last),
                                          program_id=program_id, daily=daily or as_json)
        except BadRequest as exc:  # the range as a whole: from after to, or too long
            raise usage_error(exc) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    _echo_metrics(domain, report, daily)


def _echo_metrics(domain: str, report: dict[str, Any], daily: bool) -> None:
    totals = report["totals"]

    def amounts(values: dict[str, str]) -> str:
        return money(values, report["currency"])

    click.echo(f"{domain}, {report['from']} to {report['to']} ({report['time_zone']})\n")
    aov = totals["average_order_value"]
    echo_table([
        ["METRIC", "VALUE"],
        ["codes issued", str(totals["codes_issued"])],
        ["codes redeemed", str(totals["codes_redeemed"])],
        ["redemption rate", f"{rate(totals['redemption_rate'])} ({totals['redeemed_of_issued']} of the issued)"],
        ["median time to redemption", duration(totals["median_seconds_to_redemption"])],
        ["orders with our codes", str(totals["orders_with_codes"])],
        ["revenue of those orders", amounts(totals["revenue"])],
        ["discount given", amounts(totals["discount_given"])],
        ["average order, with codes", amounts(aov["with_codes"])],
        ["average order, without",
         f"{amounts(aov['without_codes'])} ({count(totals['orders_without_codes'], 'order')})"],
        ["anomalies (code used twice)", str(totals["anomalies"])],
        ["codes on the store now", f"{report['store']['codes_on_store']:,} of Shopify's {report['store']['cap']:,} "
                                   f"({rate(report['store']['share_of_cap'])})"],
    ])
    if report["store"]["warning"]:
        click.echo(f"\nWARNING: {report['store']['warning']} (STORE_CLEANUP_GRACE_DAYS sets how long expired and "
                   "revoked codes stay before the clean-up removes them.)")
    click.echo("")
    echo_table([["PROGRAM", "ISSUED", "REDEEMED", "RATE", "MEDIAN", "ORDERS", "REVENUE", "DISCOUNT"]] + [
        [p["name"], str(p["codes_issued"]), str(p["codes_redeemed"]), rate(p["redemption_rate"]),
         duration(p["median_seconds_to_redemption"]), str(p["orders_with_codes"]), amounts(p["revenue"]),
         amounts(p["discount_given"])] for p in report["programs"]])
    if daily:
        click.echo("")
        echo_table([["DAY", "ISSUED", "REDEEMED", "ORDERS", "REVENUE", "DISCOUNT"]] + [
            [d["date"], str(d["codes_issued"]), str(d["codes_redeemed"]), str(d["orders_with_codes"]),
             amounts(d["revenue"]), amounts(d["discount_given"])] for d in report["daily"]])
    if report["referrals"] is not None:
        _echo_referrals(report, daily, amounts)


def _echo_referrals(report: dict[str, Any], daily: bool, amounts: Callable[[dict[str, str]], str]) -> None:
    """The referral loop of a metrics report: the funnel, the top advocates and, with ``daily``, its days."""
    loop = report["referrals"]
    rewards = loop["rewards"]
    conversion = "no friend codes" if loop["conversion"] is None else f"{rate(loop['conversion'])} of the friend codes"
    click.echo("")
    echo_table([
        ["REFERRALS", "VALUE"],
        ["link clicks", f"{loop['link_clicks']} ({count(loop['unique_visitors'], 'unique visitor')})"],
        ["friend codes handed out", str(loop["friend_codes"])],
        ["friend orders", f"{loop['friend_orders']} ({conversion})"],
        ["referred revenue", amounts(loop["referred_revenue"])],
        ["rewarded revenue", amounts(loop["rewarded_revenue"])],
        ["rewards", ", ".join(f"{rewards[state]} {state}" for state in ("pending", "issued", "voided", "blocked"))],
        ["voided because", cell(loop["voided_reasons"])],
        ["blocked because", cell(loop["blocked_reasons"])],
    ])
    click.echo("")
    if loop["top_advocates"]:
        echo_table([["ADVOCATE (CUSTOMER ID)", "LINK", "FRIEND ORDERS", "REWARDED", "REVENUE"]] + [
            [str(a["customer_id"]), str(a["link_id"]), str(a["friend_orders"]), str(a["rewarded"]),
             amounts(a["revenue"])] for a in loop["top_advocates"]])
    else:
        click.echo("no advocate brought a friend order in this range")
    if daily:
        click.echo("")
        echo_table([["DAY", "CLICKS", "VISITORS", "FRIEND CODES", "FRIEND ORDERS", "REWARDS ISSUED", "REVENUE"]] + [
            [d["date"], str(r["link_clicks"]), str(r["unique_visitors"]), str(r["friend_codes"]),
             str(r["friend_orders"]), str(r["rewards_issued"]), amounts(r["referred_revenue"])]
            for d in report["daily"] for r in (d["referrals"],)])
