"""Throttled jobs are deferred by rq rather than failed, and one shop's flood leaves other shops runnable.

The Admin API is ``responses`` at the client's boundary; jobs run in a real burst worker, with rq's
scheduler when a deferred job must come back.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import responses
from rq import Queue
from rq.job import Job
from rq.rate_limit import RateLimitRegistry
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from app.codes.issuance import BATCH_POINTS, reserve
from app.db import utcnow
from app.models import IssuedCode, Shop
from app.queues import QUEUES, SETUP_RETRY, enqueue_issuance, enqueue_setup, issue_job_id, setup_job_id
from app.shopify.throttle import ShopBuckets
from tests.conftest import run_worker
from tests.helpers import make_shop, make_shop_with_programs, program_of
from workers import deferral
from workers.worker import Worker

SHOP = "demo.myshopify.com"
GRAPHQL_URL = f"https://{SHOP}/admin/api/2026-10/graphql.json"
EMPTY = {"maximumAvailable": 1000.0, "currentlyAvailable": 0, "restoreRate": 10.0}  # 50 points: 5 s away
FULL = {"maximumAvailable": 1000.0, "currentlyAvailable": 1000, "restoreRate": 100.0}


def subscriptions_answer() -> dict:
    return {"data": {"webhookSubscriptions": {"nodes": []}},
            "extensions": {"cost": {"requestedQueryCost": 102, "actualQueryCost": 2, "throttleStatus": FULL}}}


def created_answer() -> dict:
    return {"data": {"webhookSubscriptionCreate": {"webhookSubscription": {"id": "gid://shopify/WebhookSubscription/1"},
                                                   "userErrors": []}}}


@pytest.fixture
def api():  # type: ignore[no-untyped-def]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def unset_shop(db, rt) -> Shop:  # type: ignore[no-untyped-def]
    return make_shop(db, rt.cipher, domain=SHOP, set_up=False)


def enqueue(rt, shop: Shop) -> Job:  # type: ignore[no-untyped-def]
    assert enqueue_setup(rt.redis, shop.id, shop.installed_at)
    return Job.fetch(setup_job_id(shop.id, shop.installed_at), connection=rt.redis)


def bring_forward(redis, job: Job) -> None:  # type: ignore[no-untyped-def]
    """Make a scheduled job due now, instead of sleeping until it is."""
    ScheduledJobRegistry("default", connection=redis).schedule(job, datetime.now(UTC))


def run_worker_with_scheduler(redis) -> None:  # type: ignore[no-untyped-def]
    Worker(list(QUEUES), connection=redis).work(burst=True, with_scheduler=True)


def test_a_throttled_job_is_deferred_without_spending_its_retries_and_completes_later(rt, db, api, unset_shop):
    ShopBuckets(rt.redis).observe(SHOP, EMPTY)
    job = enqueue(rt, unset_shop)

    run_worker(rt.redis)

    job.refresh()
    assert job.get_status() == "scheduled"
    assert job.retries_left == SETUP_RETRY.max  # error retries untouched
    assert job.number_of_retries == 1  # one deferral
    assert len(api.calls) == 0  # the bucket said "5 s away": nothing was sent
    due = ScheduledJobRegistry("default", connection=rt.redis).get_scheduled_time(job)
    assert timedelta(seconds=3) < due - datetime.now(UTC) <= timedelta(seconds=6)  # rq keeps whole seconds
    db.expire_all()
    assert db.get(Shop, unset_shop.id).setup_error is None  # waiting is not failing
    assert RateLimitRegistry(f"shop:{unset_shop.id}", rt.redis).get_allowed_job_ids() == []  # slot given back

    ShopBuckets(rt.redis).observe(SHOP, FULL)  # the bucket refilled meanwhile
    api.post(GRAPHQL_URL, json=subscriptions_answer())
    api.post(GRAPHQL_URL, json=created_answer())
    bring_forward(rt.redis, job)
    run_worker_with_scheduler(rt.redis)

    job.refresh()
    assert job.get_status() == "finished" and job.return_value() == "set up"
    db.expire_all()
    assert db.get(Shop, unset_shop.id).setup_completed_at is not None


def test_a_job_deferred_too_often_falls_back_to_its_error_retries(rt, db, api, unset_shop, monkeypatch):
    monkeypatch.setattr(deferral, "MAX_DEFERRALS", 1)
    ShopBuckets(rt.redis).observe(SHOP, EMPTY)
    job = enqueue(rt, unset_shop)
    run_worker(rt.redis)
    job.refresh()
    assert job.get_status() == "scheduled" and job.retries_left == SETUP_RETRY.max

    ShopBuckets(rt.redis).observe(SHOP, EMPTY)
    bring_forward(rt.redis, job)
    run_worker_with_scheduler(rt.redis)

    job.refresh()
    assert job.get_status() == "scheduled"  # retried for the error, with back-off
    assert job.retries_left == SETUP_RETRY.max - 1
    db.expire_all()
    assert db.get(Shop, unset_shop.id).setup_error.startswith("Throttled:")


def test_a_throttled_answer_mid_job_defers_it(rt, api, unset_shop):
    throttled = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                 "extensions": {"cost": {"requestedQueryCost": 102, "actualQueryCost": None,
                                         "throttleStatus": {**EMPTY, "currentlyAvailable": 2}}}}
    api.post(GRAPHQL_URL, json=throttled)
    job = enqueue(rt, unset_shop)

    run_worker(rt.redis)

    job.refresh()
    assert job.get_status() == "scheduled" and job.retries_left == SETUP_RETRY.max
    assert len(api.calls) == 1
    state = ShopBuckets(rt.redis).state(SHOP)
    assert state["available"] == 2 and state["rate"] == 10  # what Shopify said is what we now believe


# --- fairness ---------------------------------------------------------------------------------

def flood(redis, shop_id: int, jobs: int) -> list[str]:  # type: ignore[no-untyped-def]
    start = utcnow()
    ids = []
    for n in range(jobs):
        installed_at = start + timedelta(milliseconds=n)
        assert enqueue_setup(redis, shop_id, installed_at)
        ids.append(setup_job_id(shop_id, installed_at))
    return ids


def test_one_shops_flood_leaves_another_shops_job_runnable(rt, redis):
    flooded = flood(redis, 1, 10)
    [other] = flood(redis, 2, 1)

    queued = Queue("default", connection=redis).job_ids
    assert queued == [*flooded[:2], other]  # SHOP_JOB_CONCURRENCY = 2: the other shop is third, not eleventh
    waiting = RateLimitRegistry("shop:1", redis)
    assert waiting.get_rate_limited_job_ids() == flooded[2:]
    assert {Job.fetch(i, connection=redis).get_status() for i in flooded[2:]} == {"rate_limited"}

    run_worker(redis)  # each finished job frees its slot for the next of its shop

    assert all(Job.fetch(i, connection=redis).get_status() == "finished" for i in [*flooded, other])
    assert waiting.get_rate_limited_job_count() == 0


def test_the_concurrency_per_shop_is_a_setting(app_factory):
    rt = app_factory(shop_job_concurrency=3).extensions["oncecode"]
    flooded = flood(rt.redis, 1, 5)

    assert Queue("default", connection=rt.redis).job_ids == flooded[:3]


def test_a_setup_job_is_queued_once_even_while_rate_limited(rt, redis):
    flood(redis, 1, 2)  # both slots taken
    installed_at = utcnow() + timedelta(seconds=1)
    assert enqueue_setup(redis, 1, installed_at)
    assert Job.fetch(setup_job_id(1, installed_at), connection=redis).get_status() == "rate_limited"

    assert not enqueue_setup(redis, 1, installed_at)
    assert RateLimitRegistry("shop:1", redis).get_rate_limited_job_count() == 1


def test_racing_enqueuers_queue_one_job(rt, redis):
    installed_at = utcnow()
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def enqueue_one() -> None:
        barrier.wait()
        results.append(enqueue_setup(redis, 7, installed_at))

    threads = [threading.Thread(target=enqueue_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count(True) == 1
    assert Queue("default", connection=redis).job_ids == [setup_job_id(7, installed_at)]



# --- issuing jobs -------------------------------------------------------------------------------

def test_a_shop_has_at_most_its_issuing_slots_and_one_waits_while_the_other_runs(rt, redis):
    assert enqueue_issuance(redis, 1)  # slot 0 queued
    assert not enqueue_issuance(redis, 1)  # slot 0 waits to run: it will see any code reserved now
    Job.fetch(issue_job_id(1, 0), connection=redis).set_status("started")
    assert enqueue_issuance(redis, 1)  # slot 0 runs and may be finishing: slot 1 is queued behind it
    assert not enqueue_issuance(redis, 1)
    assert Queue("default", connection=redis).job_ids == [issue_job_id(1, 0), issue_job_id(1, 1)]
    Job.fetch(issue_job_id(1, 1), connection=redis).set_status("failed")
    Job.fetch(issue_job_id(1, 0), connection=redis).set_status("started")
    assert enqueue_issuance(redis, 1)  # a failed record does not hold its slot
    assert Job.fetch(issue_job_id(1, 1), connection=redis).get_status() == "queued"


def test_an_issuing_job_waits_for_a_whole_batchs_points_without_claiming_codes(rt, db, api):
    shop = make_shop_with_programs(db, rt.cipher, domain="flood.myshopify.com")
    reserve(db, program_of(db, shop), None, "manual:1")
    db.commit()
    # 50 points left of a bucket restoring 100/s: a batch (170 points) is 1.2 s away.
    ShopBuckets(rt.redis).observe(shop.domain, {"maximumAvailable": 2000.0, "currentlyAvailable": 50,
                                                "restoreRate": 100.0})
    assert enqueue_issuance(rt.redis, shop.id)
    run_worker(rt.redis)

    job = Job.fetch(issue_job_id(shop.id, 0), connection=rt.redis)
    assert job.get_status() == "scheduled" and job.retries_left == 8  # deferred, not failed
    due = ScheduledJobRegistry("default", connection=rt.redis).get_scheduled_time(job)
    assert timedelta(0) < due - datetime.now(UTC) <= timedelta(seconds=2.5)
    assert len(api.calls) == 0 and BATCH_POINTS == 170
    db.expire_all()
    assert db.scalar(select(IssuedCode.claimed_by)) is None  # left for whichever slot has the points
