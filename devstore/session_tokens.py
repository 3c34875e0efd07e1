"""Session tokens (ID tokens) as the Shopify admin signs them for an embedded app, and their check at
token exchange.

A session token is a JWT, HS256 with the app's client secret, living one minute. Its claims, in
Shopify's order (captured from real admin launches, see devstore/README.md): ``iss``
(``https://{shop}/admin``), ``dest`` (``https://{shop}``), ``aud`` (the client id), ``sub`` (the staff
user's id, a string of digits), ``exp`` (``iat`` + 60), ``nbf`` and ``iat`` (the minting moment),
``jti`` (a fresh UUID), ``sid`` (the admin session's id, the same for every token of one admin
session) and ``sig`` (an opaque hex digest). devstore has no staff accounts: every store has one
user, its owner, whose id is derived from the store's domain.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

import jwt

from devstore.state import DevstoreConfig

LIFETIME_SECONDS = 60
# Clock skew the token endpoint tolerates on exp/nbf (Shopify documents none; its libraries allow 10 s
# on the app's side, where clocks differ; devstore mints and checks with one clock).
LEEWAY_SECONDS = 5
REQUIRED_CLAIMS = ["iss", "dest", "aud", "sub", "exp", "nbf", "iat", "jti", "sid"]


class InvalidSubjectToken(Exception):
    """A session token the store did not issue for this app and shop, or no longer valid."""


def staff_user_id(shop: str) -> str:
    """The store owner's user id (``sub``): digits, stable across resets, like Shopify's user ids."""
    digest = hashlib.sha256(f"staff:{shop}".encode()).digest()
    return str(100_000_000_000 + int.from_bytes(digest[:5], "big") % 900_000_000_000)


def new_admin_session() -> dict[str, str]:
    """One admin session: ``sid`` (the tokens' claim, a UUID) and ``session`` (the launch parameter,
    64 hex characters), as in Shopify's launches."""
    return {"sid": str(uuid.uuid4()), "session": secrets.token_hex(32)}


def claims_for(config: DevstoreConfig, shop: str, sid: str, now: float | None = None,
               sub: str | None = None, lifetime: int = LIFETIME_SECONDS) -> dict[str, Any]:
    iat = int(time.time() if now is None else now)
    return {"iss": f"https://{shop}/admin", "dest": f"https://{shop}", "aud": config.api_key,
            "sub": sub or staff_user_id(shop), "exp": iat + lifetime, "nbf": iat, "iat": iat,
            "jti": str(uuid.uuid4()), "sid": sid, "sig": secrets.token_hex(32)}


def mint(config: DevstoreConfig, shop: str, sid: str, now: float | None = None, sub: str | None = None,
         lifetime: int = LIFETIME_SECONDS) -> str:
    """A fresh session token for ``shop``'s admin session ``sid``, signed with the client secret."""
    return encode(config, claims_for(config, shop, sid, now, sub, lifetime))


def encode(config: DevstoreConfig, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, config.api_secret, algorithm="HS256", headers={"typ": "JWT"})


def verify(config: DevstoreConfig, token: str, shop: str) -> dict[str, Any]:
    """The claims of a session token the admin issued to this app for ``shop``, or InvalidSubjectToken:
    HS256 with the client secret, ``aud`` = client id, ``exp``/``nbf`` (5 s leeway), every claim
    present, ``dest`` this shop and ``iss`` its admin."""
    try:
        claims = jwt.decode(token, config.api_secret, algorithms=["HS256"], audience=config.api_key,
                            leeway=LEEWAY_SECONDS, options={"require": REQUIRED_CLAIMS})
    except jwt.ExpiredSignatureError:
        raise InvalidSubjectToken("The session token has expired") from None
    except jwt.ImmatureSignatureError:
        raise InvalidSubjectToken("The session token is not valid yet (nbf)") from None
    except jwt.InvalidAudienceError:
        raise InvalidSubjectToken("The session token was issued to another app (aud)") from None
    except jwt.InvalidSignatureError:
        raise InvalidSubjectToken("The session token's signature is not the app's") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidSubjectToken(f"The session token has no {exc.claim} claim") from None
    except jwt.PyJWTError:
        raise InvalidSubjectToken("The session token is not a valid JWT") from None
    if claims["dest"] != f"https://{shop}" or claims["iss"] != f"https://{shop}/admin":
        raise InvalidSubjectToken(f"The session token was issued for another shop, not {shop}")
    return claims
