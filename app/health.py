"""``GET /healthz``: can this process reach its database and Redis? 200 if both, else 503.

Load balancers and uptime checks call it often, from many places; each call used to cost a database
round trip and a Redis ping. The answer now comes from a check at most ``MAX_AGE_SECONDS`` old, made
by one request at a time per process while the others wait for it (no stampede when it expires).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, current_app, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.runtime import Runtime
from app.web import rt

bp = Blueprint("health", __name__)

MAX_AGE_SECONDS = 2.0


def check_services(runtime: Runtime) -> dict[str, str]:
    """``{"database": "ok" | "unreachable (Error)", "redis": …}``, checked now."""
    checks: dict[str, str] = {}
    try:
        with runtime.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable ({type(getattr(exc, 'orig', None) or exc).__name__})"
    try:
        runtime.redis.ping()
        checks["redis"] = "ok"
    except RedisError as exc:
        checks["redis"] = f"unreachable ({type(exc).__name__})"
    return checks


@dataclass
class HealthCache:
    """The last check and when it was made; one per app (so per worker process)."""

    max_age: float = MAX_AGE_SECONDS
    clock: Callable[[], float] = time.monotonic
    _checks: dict[str, str] | None = None
    _checked_at: float = 0.0

    def __post_init__(self) -> None:
        # Under gevent this is a greenlet-aware lock (threading is patched); under threads, a thread lock.
        self._lock = threading.Lock()

    def get(self, runtime: Runtime) -> dict[str, str]:
        with self._lock:
            if self._checks is None or self.clock() - self._checked_at >= self.max_age:
                self._checks = check_services(runtime)
                self._checked_at = self.clock()
            return self._checks


def health_cache() -> HealthCache:
    return current_app.extensions.setdefault("oncecode_health", HealthCache())


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    checks = health_cache().get(rt())
    healthy = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if healthy else "degraded", **checks), 200 if healthy else 503
