"""``/healthz`` answers from a check at most a couple of seconds old, made once however many ask."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event

from app.health import MAX_AGE_SECONDS, HealthCache


@pytest.fixture
def probes(rt, monkeypatch):  # type: ignore[no-untyped-def]
    """How many times the database and Redis were actually asked (the real calls still run)."""
    counts = {"database": 0, "redis": 0}

    def on_execute(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        if statement.strip() == "SELECT 1":
            counts["database"] += 1

    event.listen(rt.db.engine, "before_cursor_execute", on_execute)
    real_ping = rt.redis.ping

    def ping(*args, **kwargs):  # type: ignore[no-untyped-def]
        counts["redis"] += 1
        return real_ping(*args, **kwargs)

    monkeypatch.setattr(rt.redis, "ping", ping)
    yield counts
    event.remove(rt.db.engine, "before_cursor_execute", on_execute)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_answers_come_from_a_check_at_most_max_age_old(app, client, probes):
    clock = Clock()
    app.extensions["oncecode_health"] = HealthCache(clock=clock)
    for _ in range(5):
        response = client.get("/healthz")
        assert response.status_code == 200 and response.json == {"status": "ok", "database": "ok", "redis": "ok"}
    assert probes == {"database": 1, "redis": 1}

    clock.now += MAX_AGE_SECONDS - 0.01
    client.get("/healthz")
    assert probes == {"database": 1, "redis": 1}
    clock.now += 0.01
    client.get("/healthz")
    assert probes == {"database": 2, "redis": 2}
    assert MAX_AGE_SECONDS <= 5  # "a few seconds" at most


def test_concurrent_requests_after_expiry_share_one_check(rt, probes):
    cache = HealthCache()
    barrier = threading.Barrier(8)
    answers: list[dict[str, str]] = []

    def ask() -> None:
        barrier.wait()
        answers.append(cache.get(rt))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(answers) == 8 and all(answer == {"database": "ok", "redis": "ok"} for answer in answers)
    assert probes == {"database": 1, "redis": 1}


def test_unreachable_redis_is_named_with_503(app_factory):
    client = app_factory(redis_url="redis://127.0.0.1:1/0").test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "degraded", "database": "ok", "redis": "unreachable (ConnectionError)"}
    assert client.get("/healthz").status_code == 503  # the cached answer is the failing one
