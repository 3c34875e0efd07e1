"""Shopify's leaky bucket for GraphQL cost, one per store (devstore serves one app per store).

A call is admitted when its requested cost fits in what is available, which refills continuously at
the restore rate up to the bucket size. The requested cost is taken up front and the difference to
the actual cost given back afterwards, as Shopify does.

Defaults are the standard plan's: Shopify's rate-limit page gives 100 points/s
(https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits, "Standard | 100 points/second");
it publishes no bucket size, and the standard-plan responses it serves report
``"maximumAvailable": 2000.0`` with ``"restoreRate": 100.0`` (a 20-second bucket, the same ratio as
the older 1000/50), hence ``Store.bucket_size = 2000``. Both are per store columns.

State is in memory (a devstore restart refills every bucket) and guarded by a lock; time comes from
an injectable monotonic ``clock`` so tests can move it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottleStatus:
    maximum_available: float
    currently_available: float
    restore_rate: float

    def as_json(self) -> dict[str, float | int]:
        """Shopify's ``throttleStatus`` (its sample: ``1000.0``, ``997``, ``50.0``: floats, an int, floats)."""
        return {"maximumAvailable": float(self.maximum_available),
                "currentlyAvailable": int(math.floor(self.currently_available)),
                "restoreRate": float(self.restore_rate)}


class Buckets:
    """Every store's bucket: points available and when that was last computed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._levels: dict[str, tuple[float, float]] = {}  # shop → (available, at)

    def _level(self, shop: str, size: float, rate: float) -> float:
        """Points available now (callers hold the lock); a new store starts full."""
        now = self.clock()
        available, at = self._levels.get(shop, (size, now))
        available = min(size, available + max(0.0, now - at) * rate)
        self._levels[shop] = (available, now)
        return available

    def _status(self, shop: str, size: float, rate: float) -> ThrottleStatus:
        return ThrottleStatus(size, self._levels[shop][0], rate)

    def status(self, shop: str, size: float, rate: float) -> ThrottleStatus:
        with self._lock:
            self._level(shop, size, rate)
            return self._status(shop, size, rate)

    def take(self, shop: str, size: float, rate: float, cost: float) -> tuple[bool, ThrottleStatus]:
        """Take ``cost`` points if they are available; (admitted, status after)."""
        with self._lock:
            available = self._level(shop, size, rate)
            admitted = cost <= available
            if admitted:
                self._levels[shop] = (available - cost, self._levels[shop][1])
            return admitted, self._status(shop, size, rate)

    def refund(self, shop: str, size: float, rate: float, points: float) -> ThrottleStatus:
        """Give back what a call did not spend (requested minus actual)."""
        with self._lock:
            available = self._level(shop, size, rate)
            self._levels[shop] = (min(size, available + points), self._levels[shop][1])
            return self._status(shop, size, rate)

    def reset(self, shop: str | None = None) -> None:
        """Refill one store's bucket (or every one), e.g. after devstore's state was reset."""
        with self._lock:
            if shop is None:
                self._levels.clear()
            else:
                self._levels.pop(shop, None)
