"""``flask tokens rotate-key``: the stored access tokens, re-encrypted after a new key is added."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.models import Shop
from app.web import rt

tokens = AppGroup("tokens", help="Stored access tokens.")


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
