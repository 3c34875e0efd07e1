"""Every check of something Shopify (or a browser claiming to be Shopify) sent us.

ShopifyAPI is deprecated upstream; it is used only here, for the OAuth query HMAC, so that replacing
it later touches this one module. Session tokens are decoded with PyJWT directly: ShopifyAPI's decoder
does not require ``exp`` and ``nbf``. Shop domains are validated with
Shopify's own anchored pattern rather than ShopifyAPI's ``__prepare_url``, which *sanitises*
(``demo.myshopify.com.evil.com`` becomes ``demo.myshopify.com``) where we must *reject*.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jwt
import shopify

# Shopify's own anchored pattern, ``^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$``
# (https://shopify.dev/docs/apps/build/security/app-security-checks/weak-shop-validation), with its
# unbounded ``*`` bounded: the shop's name is one DNS label under myshopify.com, so at most 63
# characters (RFC 1035 §2.3.4, RFC 1123 §2.1). Shopify documents no shorter limit; a longer "shop"
# can be no store of Shopify's, and without the bound a header of any length reached the database.
SHOP_DOMAIN_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,62}\.myshopify\.com")

# Callback timestamps: Shopify documents no window. Five minutes back covers a slow approve page,
# one minute forward covers clock skew; anything else is a replay or a broken clock.
MAX_AGE_SECONDS = 300
MAX_SKEW_SECONDS = 60


def valid_shop_domain(value: str | None) -> str | None:
    """The shop's myshopify domain, lower-cased, or None when ``value`` is anything else."""
    if value and SHOP_DOMAIN_RE.fullmatch(value):
        return value.lower()
    return None


def webhook_hmac(secret: str, body: bytes) -> str:
    """Shopify's webhook signature: base64 of HMAC-SHA256 over the raw body bytes."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_webhook(body: bytes, signature: str | None, secrets: Iterable[str]) -> bool:
    """Constant-time check of ``X-Shopify-Hmac-Sha256`` against each secret (current, then previous)."""
    if not signature:
        return False
    given = signature.strip().encode()
    return any(hmac.compare_digest(webhook_hmac(secret, body).encode(), given) for secret in secrets)


def query_hmac(secret: str, params: Mapping[str, Any]) -> str:
    """The hex HMAC Shopify puts in OAuth callbacks and admin launches, computed by ShopifyAPI."""
    # ShopifyAPI keeps the secret on the class; a throw-away subclass keeps it off global state.
    signer = type("_Signer", (shopify.Session,), {"secret": secret})
    return signer.calculate_hmac(_signed_params(params))


def _signed_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict as ShopifyAPI expects it: every value of a repeated ``key[]`` kept, as a list.

    ``dict()`` of a request's query (a multi-dict) keeps only the first value, so an admin launch
    with ``ids[]=2&ids[]=1`` would be signed as ``ids=["2"]`` and rejected.
    """
    getlist = getattr(params, "getlist", None)
    if getlist is None:
        return dict(params)
    return {key: getlist(key) if key.endswith("[]") else params[key] for key in params}


def verify_query_hmac(params: Mapping[str, Any], secrets: Iterable[str]) -> bool:
    given = params.get("hmac")
    if not given:
        return False
    # Bytes: compare_digest raises TypeError on a str with non-ASCII characters (a 500, not a 403).
    given_bytes = str(given).encode()
    return any(hmac.compare_digest(query_hmac(secret, params).encode(), given_bytes) for secret in secrets)


def fresh_timestamp(value: str | None, now: float | None = None) -> bool:
    try:
        stamp = int(value or "")
    except ValueError:
        return False
    current = time.time() if now is None else now
    return current - MAX_AGE_SECONDS <= stamp <= current + MAX_SKEW_SECONDS


class InvalidSessionToken(Exception):
    """A session token that does not prove its shop; ``expired`` when it only lived past its ``exp``."""

    def __init__(self, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


BEARER = "Bearer "
# App Bridge's clock and ours may differ by a few seconds (ShopifyAPI allows the same).
SESSION_TOKEN_LEEWAY_SECONDS = 10
# Every claim Shopify puts in a session token that we rely on; a token without one is refused. Without
# exp and nbf (PyJWT checks them only when present) a token would be valid for ever.
SESSION_TOKEN_CLAIMS = ["iss", "dest", "aud", "sub", "exp", "nbf", "jti", "sid"]


def decode_session_token(authorization: str | None, api_key: str, secrets: Iterable[str]) -> str:
    """Verify an App Bridge session token (``Authorization: Bearer <jwt>``) and return its shop domain.

    HS256 with the app secret (current, then previous), ``aud`` equal to our client id, ``exp`` and
    ``nbf`` required and checked with a 10 s leeway, ``iss`` and ``dest`` on the same shop.
    """
    if not authorization or not authorization.startswith(BEARER):
        raise InvalidSessionToken("no bearer token in the Authorization header")
    token = authorization.removeprefix(BEARER)
    claims: dict[str, Any] | None = None
    problem = "no app secret to check it with"
    for secret in secrets:
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], audience=api_key,
                                leeway=SESSION_TOKEN_LEEWAY_SECONDS, options={"require": SESSION_TOKEN_CLAIMS})
            break
        except jwt.InvalidSignatureError as exc:  # perhaps signed with the other secret
            problem = str(exc)
        except jwt.ExpiredSignatureError as exc:  # ours, and valid a while ago
            raise InvalidSessionToken(str(exc), expired=True) from exc
        except jwt.PyJWTError as exc:  # signed by us but early, for another app…; or no JWT at all
            raise InvalidSessionToken(str(exc)) from exc
    if claims is None:
        raise InvalidSessionToken(problem)
    return _token_shop(claims)


def _token_shop(claims: dict[str, Any]) -> str:
    """The shop of ``dest`` (``https://{shop}``), which ``iss`` (``https://{shop}/admin``) must name too."""
    dest, iss = claims["dest"], claims["iss"]
    shop = valid_shop_domain(dest.removeprefix("https://")) if isinstance(dest, str) else None
    if shop is None:
        raise InvalidSessionToken("session token names no myshopify shop")
    # ShopifyAPI's rule: the issuer's origin is the destination's (Shopify sends https://{shop}/admin).
    issuer = iss.lower() if isinstance(iss, str) else ""
    if not issuer.startswith("https://") or issuer.removeprefix("https://").split("/", 1)[0] != shop:
        raise InvalidSessionToken("the issuer and destination do not match")
    return shop
