"""Verifying the admin's document requests: the ``id_token`` Shopify puts in the URL of every page it
frames (a session token: HS256 with the client secret, ``aud`` our client id, ``exp``/``nbf`` with
leeway, ``iss`` and ``dest`` the same shop — ``app.shopify.verify.decode_session_token``, the check the
JSON API makes on its ``Authorization`` header). The shop always comes from the token.

A page opened without a valid token (a link followed inside the app, a reload after a minute, a token
for another app) is not refused: it is sent to the **session-token page**, which loads App Bridge; App
Bridge obtains a fresh token and reloads the page at ``shopify-reload`` with it (Shopify's "patch ID
token" flow, as ``shopifyapp``'s ``verify_app_home_req`` does it, with our stricter token check).
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import g, request, url_for

from app.errors import OnceCodeError, Unauthorized
from app.headers import remember_verified_shop
from app.shopify.verify import BEARER, InvalidSessionToken, decode_session_token
from app.web import rt

# What Shopify adds to the app's URL that pages pass on to their links (never the id_token, which
# lives a minute: a link gets a fresh one through the session-token page).
CARRIED = ("shop", "host", "embedded", "locale")


class NeedsSessionToken(OnceCodeError):
    """The page has no valid id_token: send it through the session-token page for a fresh one."""

    status = 302


def page_shop() -> tuple[str, str]:
    """The shop the page's ``id_token`` vouches for, and the token.

    No token, or one that has only expired (a page reloaded after a minute), goes for a fresh one
    (``NeedsSessionToken``); any other failed check (signature, audience, ``nbf``, a missing claim,
    ``iss`` and ``dest`` apart) is refused: 401.
    """
    token = request.values.get("id_token", "")  # in the query (a page, a link), or a form's body
    if not token:
        raise NeedsSessionToken("no id_token")
    settings = rt().settings
    try:
        shop = decode_session_token(BEARER + token, settings.shopify_api_key, settings.api_secrets)
    except InvalidSessionToken as exc:
        if exc.expired:
            raise NeedsSessionToken(str(exc)) from exc
        raise Unauthorized(f"this page could not be verified ({exc}); open OnceCode from your Shopify admin") from exc
    remember_verified_shop(shop)
    return shop, token


def carried() -> dict[str, str]:
    """The request's Shopify parameters a link inside the app passes on; ``shop`` is the verified one
    when the page proved it (never a ``?shop=`` that disagrees with the token)."""
    params = {name: request.args[name] for name in CARRIED if request.args.get(name)}
    if g.get("verified_shop"):
        params["shop"] = g.verified_shop
    return params


def reload_target() -> str:
    """This page's path and query without its ``id_token``: where App Bridge reloads with a fresh one."""
    query = [(name, value) for name, value in request.args.items(multi=True) if name != "id_token"]
    return request.path + ("?" + urlencode(query) if query else "")


def session_token_page_url() -> str:
    return url_for("admin.session_token", **carried(), **{"shopify-reload": reload_target()})
