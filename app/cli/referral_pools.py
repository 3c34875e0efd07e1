"""``flask --app app referrals pool|top-up|pool-settings|caps SHOP``: the friend code pools (``app.codes.pools``)
and the landing caps (``app.codes.landing``),
commands of the one ``referrals`` group (``app.cli.referrals``)."""

from __future__ import annotations

import click
from sqlalchemy import select

from app.cli.common import shop_or_fail
from app.cli.referrals import referrals_cli as referrals
from app.codes import landing, pools
from app.errors import BadRequest
from app.models import Program, Shop
from app.queues import enqueue_pool_top_up, job_status, pool_top_up_job_id
from app.web import rt


def _friend_program(session, domain: str) -> tuple[Shop, Program]:  # type: ignore[no-untyped-def]
    shop = shop_or_fail(session, domain)
    program = session.scalars(select(Program).where(Program.shop_id == shop.id,
                                                    Program.kind == "referral_friend")).first()
    if program is None:
        raise click.ClickException(f"{domain} has no referral_friend program")
    return shop, program


def _settings(assignments: tuple[str, ...]) -> dict[str, object]:
    """``SETTING=VALUE`` strings as the values the domain's validation takes: whole numbers (ASCII digits
    only, so ``²`` is not one) as ints, anything else passed on as text for the domain to refuse by name."""
    changes: dict[str, object] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"{item!r} is not SETTING=VALUE")
        digits = value.strip().removeprefix("-")
        changes[name.strip()] = int(value) if digits.isascii() and digits.isdigit() else value
    return changes


@referrals.command("pool")
@click.argument("domain")
def pool_show(domain: str) -> None:
    """Friend codes available, handed out and failed; the current window; the points the pools cost."""
    with rt().db.session_scope() as session:
        shop, program = _friend_program(session, domain)
        status = pools.pool_status(session, shop.id, program.id)
    state = job_status(rt().redis, pool_top_up_job_id(shop.id, program.id))
    window = status["current_window"]
    settings = status["settings"]
    rows = [
        ("program", f"{program.id} ({'active' if status['active'] else 'off'})"),
        ("available", str(status["available"])),
        ("handed out", str(status["handed_out"])),
        ("expired", str(status["expired"])),
        ("pending", str(status["pending"])),
        ("failed", str(status["failed"])),
        ("current window", f"{window['from'][:16]} to {window['until'][:16]} UTC" if window else "none"),
        ("settings", f"top up below {settings['low_water']} to {settings['size']}; "
                     f"a pool hands out for {settings['window_days']} days"),
        ("bulk creations", f"{status['bulk_creations']['count']} ({status['bulk_creations']['imported']} codes "
                           f"imported, {status['bulk_creations']['failed']} failed)"),
        ("points spent", f"{status['points_spent']}"
                         + (f" ({status['points_per_code']} a code)" if status["points_per_code"] else "")),
        ("top-up job", state.value if state is not None else "none"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name.ljust(width)}  {value}")
    for pool in status["pools"]:
        click.echo(f"pool {pool['id']}: {pool['status']}, {pool['from'][:10]} to {pool['until'][:10]}, "
                   + ", ".join(f"{n} {s}" for s, n in sorted(pool["codes"].items()))
                   + (f"; error: {pool['error']}" if pool["error"] else ""))


@referrals.command("top-up")
@click.argument("domain")
def pool_top_up(domain: str) -> None:
    """Queue the top-up (and rotation) of the shop's friend code pool now."""
    with rt().db.session_scope() as session:
        shop, program = _friend_program(session, domain)
        if not shop.is_installed:
            raise click.ClickException(f"{domain} is not installed; its pool cannot be filled")
        if not program.active:
            raise click.ClickException(f"{domain}'s referral_friend program is off; switch it on first")
    queued = enqueue_pool_top_up(rt().redis, shop.id, program.id)
    click.echo("top-up queued" if queued else "a top-up is already queued or running", nl=False)
    click.echo(f"; `flask referrals pool {domain}` shows the pool")


@referrals.command("pool-settings")
@click.argument("domain")
@click.argument("assignments", nargs=-1, required=True)
def pool_settings(domain: str, assignments: tuple[str, ...]) -> None:
    """Set low_water=N, size=N, window_days=N (e.g. ``size=5000 low_water=1000``)."""
    changes = _settings(assignments)
    with rt().db.session_scope() as session:
        shop, program = _friend_program(session, domain)
        try:
            pools.set_pool_settings(session, shop.id, program.id, changes)
        except BadRequest as exc:
            raise click.UsageError(str(exc)) from None
        click.echo(f"pool: top up below {program.pool_low_water} to {program.pool_size}; "
                   f"a pool hands out for {program.pool_window_days} days")


@referrals.command("caps")
@click.argument("domain")
@click.argument("assignments", nargs=-1)
def landing_caps(domain: str, assignments: tuple[str, ...]) -> None:
    """Show the landing's caps and latest blocks; set per_link_per_day=N, per_address_per_hour=N (0 = off)."""
    changes = _settings(assignments)
    with rt().db.session_scope() as session:
        shop, program = _friend_program(session, domain)
        if changes:
            try:
                landing.set_caps(session, program, changes)
            except BadRequest as exc:
                raise click.UsageError(str(exc)) from None
        caps = landing.caps_json(program)
        blocked = landing.blocks(session, shop.id, limit=20)
    shown = {name: (str(value) if value else "off") for name, value in caps.items()}
    click.echo(f"friend codes per link per day: {shown['per_link_per_day']}; "
               f"per client address per hour: {shown['per_address_per_hour']}")
    for block in blocked:
        click.echo(f"blocked {block['at'][:19]} link {block['link_id']}: {block['reason']}")
    if not blocked:
        click.echo("no blocks recorded")
