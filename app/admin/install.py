"""Managed installation: a shop Shopify installed for us (the scopes of ``shopify.app.toml``, no OAuth
redirect) is set up the first time a merchant opens the app.

The page's session token is exchanged for an expiring offline token (``oauth.exchange_session_token``,
through our own HTTP client, so ``SHOPIFY_STORE_BASE_URL`` applies), stored like an OAuth grant, and the
post-install set-up is queued — exactly once, however many tabs open the app at the same moment: the
exchange runs under a per-shop Redis lock, and whoever takes the lock after the first finds the token
stored and exchanges nothing (the same pattern as the token refresh, ``app.shopify.tokens``).
"""

from __future__ import annotations

import logging

from redis.exceptions import LockError

from app import lifecycle
from app.db import utcnow
from app.errors import OnceCodeError
from app.models import Shop
from app.queues import enqueue_setup
from app.runtime import Runtime
from app.shopify import oauth

log = logging.getLogger(__name__)

LOCK_SECONDS = 30  # outlasts the token endpoint's timeouts (3 s connect, 15 s read)


class MissingScopes(OnceCodeError):
    """The store granted fewer scopes than OnceCode needs: the merchant must update the app."""

    status = 403

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"the store granted fewer scopes than OnceCode needs (missing {', '.join(missing)})")
        self.missing = missing


class InstallBusy(OnceCodeError):
    """Another request is installing the shop and did not finish in time."""

    status = 503


def holds_token(shop: Shop | None, required: tuple[str, ...]) -> bool:
    """Whether we hold a token for the shop that works (or can be refreshed) and covers ``required``."""
    if shop is None or not shop.is_installed:
        return False
    now = utcnow()
    alive = ((shop.access_token_expires_at is None or shop.access_token_expires_at > now)
             or (shop.refresh_token is not None
                 and (shop.refresh_token_expires_at is None or shop.refresh_token_expires_at > now)))
    return alive and not oauth.missing_scopes(required, tuple(filter(None, shop.scopes.split(","))))


def ensure_installed(rt: Runtime, domain: str, session_token: str) -> int:
    """The shop's id, installed: at once when we hold a token; else by token exchange, once.

    ``session_token`` is the verified one the page arrived with. Raises ``MissingScopes`` when the
    store granted less than we need (nothing is stored then), ``InstallBusy`` when another request
    holds the lock too long, and ``oauth.TokenEndpointError`` when the store refuses the exchange.
    """
    required = rt.settings.shopify_scopes
    with rt.db.session_scope() as session:
        shop = lifecycle.shop_by_domain(session, domain)
        if holds_token(shop, required):
            return shop.id  # type: ignore[union-attr]
    lock = rt.redis.lock(f"oncecode:token-exchange:{domain}", timeout=LOCK_SECONDS,
                         blocking_timeout=LOCK_SECONDS + 5)
    try:
        acquired = lock.acquire()
    except LockError as exc:
        raise InstallBusy("the store is being set up; reload in a moment") from exc
    if not acquired:
        raise InstallBusy("the store is being set up; reload in a moment")
    try:
        with rt.db.session_scope() as session:  # whoever held the lock before us has installed it
            shop = lifecycle.shop_by_domain(session, domain)
            if holds_token(shop, required):
                return shop.id  # type: ignore[union-attr]
        grant = oauth.exchange_session_token(rt.settings, domain, session_token)
        lacking = oauth.missing_scopes(required, grant.scopes)
        if lacking:
            log.warning("managed install refused: scopes missing", extra={"shop": domain,
                                                                          "reason": ", ".join(lacking)})
            raise MissingScopes(lacking)
        with rt.db.session_scope() as session:
            record = lifecycle.install(session, domain, grant, rt.settings.shopify_api_version, rt.cipher)
            shop_id, installed_at = record.id, record.installed_at
        log.info("shop installed by token exchange", extra={"shop": domain})
        enqueue_setup(rt.redis, shop_id, installed_at)
        return shop_id
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("token exchange lock expired before release", extra={"shop": domain})
