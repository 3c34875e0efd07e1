"""Helpers for request handlers: the runtime, a database session per request, the current shop."""

from __future__ import annotations

from flask import current_app, g, request
from sqlalchemy.orm import Session

from app.errors import Unauthorized
from app.runtime import Runtime
from app.shopify.verify import InvalidSessionToken, decode_session_token


def rt() -> Runtime:
    return current_app.extensions["oncecode"]


def db_session() -> Session:
    """This request's session, closed when the request ends."""
    if "db_session" not in g:
        g.db_session = rt().db.sessions()
    return g.db_session


def session_token_shop() -> str:
    """The shop an App Bridge session token vouches for; 401 for anything else."""
    settings = rt().settings
    try:
        return decode_session_token(request.headers.get("Authorization"), settings.shopify_api_key,
                                    settings.api_secrets)
    except InvalidSessionToken as exc:
        raise Unauthorized(f"a valid session token is required (Authorization: Bearer …): {exc}") from exc
