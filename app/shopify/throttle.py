"""Shopify's leaky bucket, mirrored per shop in Redis so that every worker paces against the same state.

Shopify keeps one GraphQL cost bucket per app and shop: calls take their requested cost from it,
the unspent part comes back when the call ends, and it refills at ``restoreRate`` points a second
up to ``maximumAvailable``. Only this app draws from its own bucket, so a mirror of it predicts
well: a call reserves its estimated cost here first and, if the points are not there yet, learns
how long to wait instead of spending a request on a ``THROTTLED`` answer. After every answer the
``throttleStatus`` Shopify reports replaces our estimate (the truth wins; the refund of requested
minus actual cost is already in its ``currentlyAvailable``).

Each shop's mirror is one Redis hash, ``oncecode:bucket:<shop>``: ``max``, ``available``, ``rate``
and ``at``, the Redis server time they describe. The arithmetic runs in Lua scripts that read the
clock with ``TIME``, so workers on machines whose clocks disagree still agree on the bucket, and a
reservation is atomic however many workers reserve at once.

A shop we know nothing about (never called, or idle longer than the key's TTL, which is far longer
than any bucket takes to refill) is assumed to have a full standard-plan bucket: 2,000 points
restoring at 100 a second, what Shopify's standard-plan responses report (the older 1,000/50 is too
small for today's plans and would slow every shop's first calls for nothing). The first answer
replaces the assumption with the shop's real figures.

Estimated costs are remembered per GraphQL document in ``oncecode:query-cost``: the last
``requestedQueryCost`` Shopify reported for it (variables such as ``first`` change it, so this is
an estimate; an answer corrects any error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis import Redis

ASSUMED_MAXIMUM = 2000.0  # standard plan: see the module docstring
ASSUMED_RESTORE_RATE = 100.0
IDLE_TTL = 900  # seconds; a bucket refills completely long before an idle shop's mirror expires
COSTS_KEY = "oncecode:query-cost"

# KEYS[1] bucket hash. ARGV: cost, assumed maximum, assumed restore rate, ttl, take (1) or only look (0).
# Takes the cost when it is there (if asked to), and returns the seconds to wait for it otherwise,
# as a string (a Lua number would be truncated to an integer).
RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'max', 'available', 'rate', 'at')
local max = tonumber(state[1]) or tonumber(ARGV[2])
local rate = tonumber(state[3]) or tonumber(ARGV[3])
local available = tonumber(state[2]) or max
local at = tonumber(state[4]) or now
if rate <= 0 then rate = tonumber(ARGV[3]) end
available = math.min(max, available + rate * math.max(0, now - at))
-- No call can need more than the whole bucket (Shopify refuses queries over 1,000 points anyway).
local cost = math.min(tonumber(ARGV[1]), max)
if available < cost then
    return string.format('%.4f', (cost - available) / rate)
end
if ARGV[5] == '1' then
    redis.call('HSET', KEYS[1], 'max', max, 'available', string.format('%.4f', available - cost), 'rate', rate,
               'at', string.format('%.6f', now))
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
end
return '0'
"""

# KEYS[1] bucket hash. ARGV: maximumAvailable, currentlyAvailable, restoreRate, ttl.
OBSERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('HSET', KEYS[1], 'max', ARGV[1], 'available', ARGV[2], 'rate', ARGV[3], 'at', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""


def bucket_key(shop: str) -> str:
    return f"oncecode:bucket:{shop}"


class ShopBuckets:
    """Every shop's bucket mirror on one Redis connection. Cheap to build; build one per job or client."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._reserve = redis.register_script(RESERVE)
        self._observe = redis.register_script(OBSERVE)

    def reserve(self, shop: str, cost: float) -> float:
        """Take ``cost`` points and return 0, or take nothing and return the seconds until they are there."""
        return self._run_reserve(shop, cost, take=True)

    def wait_for(self, shop: str, points: float) -> float:
        """Seconds until ``points`` will be available (capped at the bucket's size), taking nothing."""
        return self._run_reserve(shop, points, take=False)

    def _run_reserve(self, shop: str, points: float, take: bool) -> float:
        return float(self._reserve(keys=[bucket_key(shop)], args=[
            float(points), ASSUMED_MAXIMUM, ASSUMED_RESTORE_RATE, IDLE_TTL, "1" if take else "0"]))

    def observe(self, shop: str, throttle_status: Mapping[str, Any]) -> None:
        """Record the ``extensions.cost.throttleStatus`` of an answer as the shop's bucket, as of now."""
        try:
            maximum = float(throttle_status["maximumAvailable"])
            available = float(throttle_status["currentlyAvailable"])
            rate = float(throttle_status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return  # an answer without usable figures teaches nothing; keep the estimate
        if maximum <= 0 or rate <= 0:
            return
        self._observe(keys=[bucket_key(shop)], args=[maximum, min(max(available, 0.0), maximum), rate, IDLE_TTL])

    def state(self, shop: str) -> dict[str, float]:
        """The stored mirror (not refilled to now): for tests and for a person debugging."""
        return {k.decode(): float(v) for k, v in self.redis.hgetall(bucket_key(shop)).items()}

    def estimate(self, document: str, default: int) -> int:
        """The cost to reserve for ``document``: what Shopify last requested for it, else ``default``."""
        known = self.redis.hget(COSTS_KEY, document)
        return int(known) if known is not None else default

    def remember(self, document: str, requested: int) -> None:
        self.redis.hset(COSTS_KEY, document, int(requested))
