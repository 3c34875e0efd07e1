"""Security headers on every answer, set in one after-request hook.

- ``X-Content-Type-Options: nosniff`` everywhere: a browser renders a body as what its Content-Type
  says, never as HTML it guessed (an error message repeating a hostile parameter stays text).
- ``Referrer-Policy: no-referrer`` everywhere. Our pages are opened with secrets in their query
  string (OAuth's ``code`` and ``state``, the launch's ``hmac``, ``host``, ``id_token``), and every
  page loads our stylesheet: even ``strict-origin-when-cross-origin`` would send those URLs whole
  to our own origin (in a ``Referer`` any proxy may log) and the origin to every other. Nothing we
  link to needs a referrer: the store's pages and the admin open the same without one.
- ``Content-Security-Policy: frame-ancestors https://{shop} https://admin.shopify.com`` on HTML
  answers, as Shopify requires of embedded apps, where ``shop`` is the store the request proved it
  comes from (``remember_verified_shop``: an App Bridge session token, or a launch or OAuth callback
  whose HMAC checked out), never a ``?shop=`` anyone can write; ``frame-ancestors 'none'`` otherwise.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g

REFERRER_POLICY = "no-referrer"
SHOPIFY_ADMIN = "https://admin.shopify.com"


def remember_verified_shop(shop: str) -> None:
    """Record that this request proved it comes from ``shop`` (a valid myshopify domain): the HTML it
    gets may then be framed by that store's admin. Called by the code that verified it, only."""
    g.verified_shop = shop


def allow_framing_by(shop: str) -> None:
    """Let ``shop``'s admin frame a page that shows no data (the session-token page), on a shop the
    request only claims: what ``shopifyapp`` does for its "patch ID token" page."""
    g.verified_shop = shop


def frame_ancestors(shop: str | None) -> str:
    """Who may frame the page: the shop's own origin (``https://{shop}``, or the local store's when the
    configuration points stores at devstore) and Shopify's admin; nobody when no shop was proved."""
    if not shop:
        return "frame-ancestors 'none'"
    runtime = current_app.extensions.get("oncecode")
    store = runtime.settings.store_url(shop) if runtime is not None else f"https://{shop}"
    parts = urlsplit(store)
    return f"frame-ancestors {parts.scheme}://{parts.netloc} {SHOPIFY_ADMIN}"


def init_security_headers(app: Flask) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = REFERRER_POLICY
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = frame_ancestors(g.get("verified_shop"))
        return response
