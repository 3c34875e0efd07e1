"""The per-shop bucket mirror in Redis: arithmetic on Redis's clock, Shopify's figures winning, atomicity."""

from __future__ import annotations

import threading
import time

import pytest

from app.shopify.throttle import ASSUMED_MAXIMUM, ASSUMED_RESTORE_RATE, IDLE_TTL, ShopBuckets, bucket_key

SHOP = "demo.myshopify.com"


def status(maximum: float, available: float, rate: float) -> dict[str, float]:
    return {"maximumAvailable": maximum, "currentlyAvailable": available, "restoreRate": rate}


@pytest.fixture
def buckets(redis) -> ShopBuckets:  # type: ignore[no-untyped-def]
    return ShopBuckets(redis)


def observed_seconds_ago(buckets: ShopBuckets, shop: str, seconds: float) -> None:
    """Move the last observation into the past, by Redis's clock (the one the scripts read)."""
    server_seconds, micros = buckets.redis.time()
    buckets.redis.hset(bucket_key(shop), "at", f"{server_seconds + micros / 1e6 - seconds:.6f}")


def test_an_unknown_shop_is_assumed_to_have_a_full_standard_bucket(buckets):
    assert buckets.reserve(SHOP, 100) == 0
    state = buckets.state(SHOP)
    assert state["max"] == ASSUMED_MAXIMUM and state["rate"] == ASSUMED_RESTORE_RATE
    assert state["available"] == pytest.approx(ASSUMED_MAXIMUM - 100)
    assert 0 < buckets.redis.ttl(bucket_key(SHOP)) <= IDLE_TTL  # idle shops are forgotten


def test_reserve_takes_what_is_there_and_otherwise_says_how_long_to_wait(buckets):
    # A slow restore rate, so that a busy machine's pause between the calls barely moves the figures.
    buckets.observe(SHOP, status(100, 30, 1))
    assert buckets.reserve(SHOP, 20) == 0
    # 10 left: 20 more need (20 - 10) / 1 = 10 s, less the little restored in the meantime.
    assert buckets.reserve(SHOP, 20) == pytest.approx(10, abs=0.5)
    assert buckets.state(SHOP)["available"] == pytest.approx(10, abs=1)  # a refusal takes nothing


def test_the_bucket_refills_at_the_restore_rate_by_redis_time(buckets):
    buckets.observe(SHOP, status(1000, 0, 100))
    observed_seconds_ago(buckets, SHOP, 2.0)
    assert buckets.reserve(SHOP, 150) == 0  # 2 s × 100/s = 200 restored
    assert buckets.state(SHOP)["available"] == pytest.approx(50, abs=1)


def test_the_refill_is_capped_at_the_bucket_size(buckets):
    buckets.observe(SHOP, status(100, 0, 50))
    observed_seconds_ago(buckets, SHOP, 3600)
    assert buckets.reserve(SHOP, 10) == 0
    assert buckets.state(SHOP)["available"] == pytest.approx(90, abs=0.1)


def test_the_refill_happens_over_real_time(buckets):
    buckets.observe(SHOP, status(1000, 0, 100))
    wait = buckets.reserve(SHOP, 10)
    assert 0.05 < wait <= 0.1
    time.sleep(wait + 0.01)
    assert buckets.reserve(SHOP, 10) == 0


def test_a_call_costlier_than_the_whole_bucket_waits_only_for_a_full_bucket(buckets):
    buckets.observe(SHOP, status(100, 50, 50))
    assert buckets.reserve(SHOP, 500) == pytest.approx(1.0, abs=0.02)  # (100 - 50) / 50, not (500 - 50) / 50


def test_shopifys_figures_replace_the_estimate(buckets):
    buckets.observe(SHOP, status(2000, 2000, 100))
    buckets.reserve(SHOP, 1500)
    # Shopify took the actual cost only (the refund of requested minus actual is in its figure).
    buckets.observe(SHOP, status(2000, 1990, 100))
    assert buckets.state(SHOP)["available"] == 1990
    assert buckets.reserve(SHOP, 1900) == 0


@pytest.mark.parametrize("figures", [{}, {"maximumAvailable": 100}, status(0, 0, 0),
                                     {"maximumAvailable": "x", "currentlyAvailable": 1, "restoreRate": 1}])
def test_an_answer_without_usable_figures_keeps_the_estimate(buckets, figures):
    buckets.observe(SHOP, status(100, 40, 50))
    buckets.observe(SHOP, figures)
    assert buckets.state(SHOP)["available"] == 40


def test_shops_have_separate_buckets(buckets):
    buckets.observe(SHOP, status(100, 0, 50))
    assert buckets.reserve(SHOP, 10) > 0
    assert buckets.reserve("other.myshopify.com", 10) == 0


def test_costs_are_remembered_per_document(buckets):
    assert buckets.estimate("webhookSubscriptions", 50) == 50
    buckets.remember("webhookSubscriptions", 102)
    assert buckets.estimate("webhookSubscriptions", 50) == 102
    assert buckets.estimate("webhookSubscriptionCreate", 10) == 10


def test_many_threads_reserving_never_overdraw(buckets):
    buckets.observe(SHOP, status(1000, 1000, 1))  # a trickle of a refill: at most a point or two here
    granted: list[int] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        mine = ShopBuckets(buckets.redis)  # one per worker, as each job builds its own
        barrier.wait()
        granted.append(sum(1 for _ in range(25) if mine.reserve(SHOP, 7) == 0))

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    points = sum(granted) * 7
    assert points <= 1000 + elapsed * 1  # never more than the bucket plus its refill
    assert points > 1000 - 7  # and nothing lost: every point that fitted was handed out
    assert buckets.state(SHOP)["available"] >= 0


def test_wait_for_tells_how_long_without_taking_anything(buckets):
    buckets.observe("a.myshopify.com", status(2000.0, 100, 100.0))
    assert buckets.wait_for("a.myshopify.com", 50) == 0
    assert buckets.wait_for("a.myshopify.com", 170) == pytest.approx(0.7, abs=0.02)
    assert buckets.wait_for("a.myshopify.com", 5000) == pytest.approx(19.0, abs=0.02)  # capped at a full bucket
    assert buckets.state("a.myshopify.com")["available"] == 100  # nothing was taken
    assert buckets.reserve("a.myshopify.com", 100) == 0
