"""``flask shops list|setup``: the installed shops, and their post-install set-up run again."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app import lifecycle
from app.cli.common import count, shop_or_fail
from app.codes import metrics
from app.errors import Conflict
from app.models import Shop
from app.queues import delete_job, enqueue_setup, setup_job_id
from app.web import rt

shops = AppGroup("shops", help="Installed shops.")


@shops.command("list")
def shops_list() -> None:
    """Every shop with its install and set-up state."""
    with rt().db.session_scope() as session:
        found = list(session.scalars(select(Shop).order_by(Shop.domain)))
        live = metrics.codes_on_store(session, [shop.id for shop in found])
        for shop in found:
            state = "installed" if shop.is_installed else "uninstalled"
            setup = ("set up" if shop.setup_completed_at else
                     f"setup failed: {shop.setup_error}" if shop.setup_error else "setting up")
            expiry = shop.access_token_expires_at.isoformat() if shop.access_token_expires_at else "-"
            on_store = live.get(shop.id, 0)
            click.echo(f"{shop.domain}\t{state}\t{setup}\ttoken expires {expiry}\t"
                       f"{count(on_store, 'code')} on the store" + _cap_note(on_store))


@shops.command("setup")
@click.argument("domain")
def shops_setup(domain: str) -> None:
    """Queue post-install work (webhook subscriptions, default programs) again."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
        try:
            lifecycle.restart_setup(shop)
        except Conflict as exc:
            raise click.ClickException(str(exc)) from exc
        shop_id, installed_at = shop.id, shop.installed_at
    delete_job(rt().redis, setup_job_id(shop_id, installed_at))
    click.echo("queued" if enqueue_setup(rt().redis, shop_id, installed_at) else "not queued: is Redis up?")


def _cap_note(on_store: int) -> str:
    """`` (WARNING: ...)`` when a shop's codes on its store near Shopify's cap, else nothing."""
    if metrics.cap_warning(on_store) is None:
        return ""
    return f" (WARNING: {on_store / metrics.STORE_CODE_CAP * 100:.1f} % of Shopify's cap of {metrics.STORE_CODE_CAP:,})"
