"""Helpers for request handlers: the runtime, a database session per request, the current shop."""

from __future__ import annotations

from flask import current_app, g, request
from sqlalchemy.orm import Session
from werkzeug.exceptions import BadRequest as HTTPBadRequest
from werkzeug.routing import BaseConverter

from app.errors import Unauthorized
from app.headers import remember_verified_shop
from app.params import ROW_ID_MAX
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
        shop = decode_session_token(request.headers.get("Authorization"), settings.shopify_api_key,
                                    settings.api_secrets)
    except InvalidSessionToken as exc:
        raise Unauthorized(f"a valid session token is required (Authorization: Bearer …): {exc}") from exc
    remember_verified_shop(shop)
    return shop


class IdConverter(BaseConverter):
    """``<id:name>`` in a route: one of our rows' ids, ASCII digits up to ``ROW_ID_MAX``; other digits
    are a 400, anything else no route (404).

    Werkzeug's ``<int:…>`` matches any Unicode digit (``²`` is turned away only by ``int()``) and
    has no upper bound, so ``/api/codes/99999999999999999999`` reached PostgreSQL and failed there.
    """

    regex = r"[0-9]+"
    weight = 50

    def to_python(self, value: str) -> int:
        digits = value.lstrip("0") or "0"
        # Length first: int() refuses more than 4,300 digits with a ValueError (a 500 from here).
        if len(digits) > len(str(ROW_ID_MAX)) or int(digits) > ROW_ID_MAX:
            # An HTTPException from a converter is the request's routing error: answered as it is.
            raise HTTPBadRequest(f"an id in the path must be a whole number from 1 to {ROW_ID_MAX}, not {value[:40]}")
        return int(digits)

    def to_url(self, value: int) -> str:
        return str(int(value))
