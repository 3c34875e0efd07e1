"""``flask data-requests list|show``: the customers/data_request exports a shop received, ready to send
to the merchant (the API's ``/api/data-requests`` gives the same to the merchant's admin)."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.cli.common import ID, shop_or_fail
from app.models import DataRequest
from app.web import rt

data_requests = AppGroup("data-requests", help="customers/data_request exports.")


@data_requests.command("list")
@click.argument("domain")
def data_requests_list(domain: str) -> None:
    """Data requests received for one shop."""
    with rt().db.session_scope() as session:
        shop = shop_or_fail(session, domain)
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
        shop = shop_or_fail(session, domain)
        row = session.scalar(select(DataRequest).where(DataRequest.shop_id == shop.id,
                                                       DataRequest.id == request_id))
        if row is None:
            raise click.ClickException(f"no data request {request_id} for {domain}")
        click.echo(json.dumps(row.data, indent=2))
