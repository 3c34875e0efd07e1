"""Admin GraphQL usage per store, for benchmarks: calls answered, points charged, THROTTLED answers.

``requests`` counts every call that passed authentication; ``points`` what the store charged (the
actual cost of an executed call, the requested cost of a call its analysis refused after charging
it, nothing for THROTTLED answers and faults); ``throttled`` the THROTTLED answers, the
``graphql_throttle`` fault's included. Kept in memory next to the buckets (a devstore restart
zeroes them) and guarded by a lock: the server is threaded.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass


@dataclass
class UsageCounts:
    requests: int = 0
    points: int = 0
    throttled: int = 0

    def as_json(self) -> dict[str, int]:
        return asdict(self)


class Usage:
    """Every store's counters; a store never called reads as zeros."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, UsageCounts] = {}

    def add(self, shop: str, *, requests: int = 0, points: int = 0, throttled: int = 0) -> None:
        with self._lock:
            counts = self._counts.setdefault(shop, UsageCounts())
            counts.requests += requests
            counts.points += points
            counts.throttled += throttled

    def counts(self, shop: str) -> dict[str, int]:
        """``{"requests", "points", "throttled"}`` for ``shop``."""
        with self._lock:
            return self._counts.get(shop, UsageCounts()).as_json()

    def reset(self, shop: str | None = None) -> None:
        """Zero one store's counters (or every store's)."""
        with self._lock:
            if shop is None:
                self._counts.clear()
            else:
                self._counts.pop(shop, None)
