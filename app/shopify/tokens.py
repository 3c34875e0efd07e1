"""Offline access tokens: encrypted at rest, refreshed by workers before they expire.

Tokens are Fernet ciphertext in the database (``TOKEN_ENCRYPTION_KEY``: comma-separated keys, the
first encrypts, all decrypt — MultiFernet, so keys can be rotated). Expiring offline tokens live an
hour; their refresh token rotates on every refresh, so two concurrent refreshes for one shop would
race: a Redis lock per shop makes exactly one worker refresh while the others wait and reuse it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from redis import Redis
from redis.exceptions import LockError
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, utcnow
from app.errors import OnceCodeError
from app.models import Shop
from app.shopify import oauth

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)
LOCK_TIMEOUT = 30  # seconds a refresh may hold the lock (the token call times out well before)


class ShopNotInstalled(OnceCodeError):
    """The shop uninstalled the app (or never finished installing): there is no token to use."""

    status = 409


class TokenRefreshBusy(OnceCodeError):
    """Another worker held the shop's refresh lock for too long; try again shortly."""

    status = 503


class TokenCipher:
    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken as exc:
            raise OnceCodeError("stored token cannot be decrypted with TOKEN_ENCRYPTION_KEY") from exc

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt with the first (newest) key."""
        return self._fernet.rotate(ciphertext)


def store_grant(shop: Shop, grant: oauth.TokenGrant, cipher: TokenCipher) -> None:
    shop.access_token = cipher.encrypt(grant.access_token)
    shop.access_token_expires_at = grant.expires_at
    if grant.refresh_token is not None:
        shop.refresh_token = cipher.encrypt(grant.refresh_token)
        shop.refresh_token_expires_at = grant.refresh_token_expires_at
    shop.scopes = ",".join(grant.scopes)


def forget_tokens(shop: Shop) -> None:
    shop.access_token = None
    shop.access_token_expires_at = None
    shop.refresh_token = None
    shop.refresh_token_expires_at = None


def _needs_refresh(shop: Shop) -> bool:
    expires = shop.access_token_expires_at
    return expires is not None and expires - REFRESH_MARGIN <= utcnow()


def _usable_token(session: Session, shop_id: int, cipher: TokenCipher) -> tuple[Shop, str | None]:
    shop = session.get(Shop, shop_id, populate_existing=True)
    if shop is None or not shop.is_installed or shop.access_token is None:
        raise ShopNotInstalled(f"shop {shop_id} is not installed")
    if _needs_refresh(shop):
        return shop, None
    return shop, cipher.decrypt(shop.access_token)


def access_token_for(shop_id: int, *, db: Database, redis: Redis, settings: Settings,
                     cipher: TokenCipher) -> str:
    """A valid access token for the shop, refreshing it first when it expires within five minutes."""
    with db.session_scope() as session:
        _shop, token = _usable_token(session, shop_id, cipher)
    if token is not None:
        return token

    lock = redis.lock(f"oncecode:token-refresh:{shop_id}", timeout=LOCK_TIMEOUT,
                      blocking_timeout=LOCK_TIMEOUT + 5)
    try:
        acquired = lock.acquire()
    except LockError as exc:
        raise TokenRefreshBusy(f"token refresh lock of shop {shop_id} unavailable") from exc
    if not acquired:
        raise TokenRefreshBusy(f"token refresh of shop {shop_id} still running elsewhere")
    try:
        with db.session_scope() as session:
            # Re-read under the lock: whoever held it before us has probably refreshed already.
            shop, token = _usable_token(session, shop_id, cipher)
            if token is not None:
                return token
            if shop.refresh_token is None:
                raise ShopNotInstalled(f"shop {shop.domain} has an expired token and no refresh token")
            grant = oauth.refresh_access_token(settings, shop.domain, cipher.decrypt(shop.refresh_token))
            store_grant(shop, grant, cipher)
            log.info("access token refreshed", extra={"shop": shop.domain})
            return grant.access_token
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("token refresh lock expired before release", extra={"shop_id": shop_id})
