"""The authorization-code grant, token exchange and token refresh, over ``requests`` with explicit timeouts.

https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant
https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/token-exchange
https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/offline-access-tokens
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from app.config import Settings
from app.db import utcnow
from app.errors import OnceCodeError

TIMEOUT = (3.05, 15)  # (connect, read) seconds


class TokenEndpointError(OnceCodeError):
    """Shopify's token endpoint did not give us a token."""

    status = 502
    transient = False


class TokenEndpointUnavailable(TokenEndpointError):
    """Timeout, connection failure or 5xx: worth trying again later."""

    transient = True


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    refresh_token: str | None
    refresh_token_expires_at: datetime | None


def authorize_url(settings: Settings, shop: str, state: str) -> str:
    """Where to send the merchant to approve an offline token (no ``grant_options[]``: offline)."""
    query = urlencode({
        "client_id": settings.shopify_api_key,
        "scope": ",".join(settings.shopify_scopes),
        "redirect_uri": f"{settings.app_url}/auth/callback",
        "state": state,
    }).replace("+", "%20")
    return f"{settings.store_url(shop)}/admin/oauth/authorize?{query}"


def exchange_code(settings: Settings, shop: str, code: str) -> TokenGrant:
    """Trade the callback's ``code`` for an expiring offline token (``expiring=1``)."""
    return _post_token(settings, shop, {"code": code, "expiring": "1"})


TOKEN_EXCHANGE = {
    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
    "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
}


def exchange_session_token(settings: Settings, shop: str, session_token: str) -> TokenGrant:
    """Token exchange (managed installation): a session token from App Bridge for an expiring offline
    token, through the store URL of our configuration (``SHOPIFY_STORE_BASE_URL``)."""
    return _post_token(settings, shop, {**TOKEN_EXCHANGE, "subject_token": session_token, "expiring": "1"})


def refresh_access_token(settings: Settings, shop: str, refresh_token: str) -> TokenGrant:
    """Trade a refresh token for a new access token *and a new refresh token* (they rotate)."""
    return _post_token(settings, shop, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def _post_token(settings: Settings, shop: str, fields: dict[str, str]) -> TokenGrant:
    url = f"{settings.store_url(shop)}/admin/oauth/access_token"
    body = {"client_id": settings.shopify_api_key, "client_secret": settings.shopify_api_secret, **fields}
    try:
        response = requests.post(url, data=body, headers={"Accept": "application/json"}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise TokenEndpointUnavailable(f"token endpoint of {shop} unreachable: {type(exc).__name__}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise TokenEndpointUnavailable(f"token endpoint of {shop} answered {response.status_code}")
    try:
        payload: dict[str, Any] = response.json()
    except ValueError:
        payload = {}
    if response.status_code != 200 or not payload.get("access_token"):
        # Shopify answers {"error": ..., "error_description": ...}; neither contains a secret.
        reason = payload.get("error_description") or payload.get("error") or "no access_token in the answer"
        raise TokenEndpointError(f"token endpoint of {shop} refused ({response.status_code}): {reason}")
    return _grant(payload)


def _grant(payload: dict[str, Any]) -> TokenGrant:
    now = utcnow()

    def after(seconds: Any) -> datetime | None:
        return now + timedelta(seconds=int(seconds)) if seconds else None

    return TokenGrant(
        access_token=payload["access_token"],
        scopes=tuple(s for s in str(payload.get("scope", "")).split(",") if s),
        expires_at=after(payload.get("expires_in")),
        refresh_token=payload.get("refresh_token"),
        refresh_token_expires_at=after(payload.get("refresh_token_expires_in")),
    )


def missing_scopes(required: tuple[str, ...], granted: tuple[str, ...]) -> list[str]:
    """Required scopes the grant lacks; ``write_x`` implies ``read_x`` as Shopify documents."""
    have = set(granted) | {"read_" + s.removeprefix("write_") for s in granted if s.startswith("write_")}
    return [scope for scope in required if scope not in have]
