"""The store clean-up: expired and revoked codes leave the store in bulk after the grace period.

The app and devstore talk HTTP as in production; the codes are written straight into both (as
issuance would have left them) so that hundreds of them cost no issuing time. Jobs run in a real rq
worker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.codes import cleanup
from app.codes.issuance import ShopRef, terms_of
from app.db import utcnow
from app.models import IssuedCode, Program
from app.queues import cleanup_job_id, job_status
from app.shopify.throttle import ShopBuckets
from devstore.models import Discount, DiscountCode, Job
from devstore.state import State
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, World, installed_with_welcome
from workers.cleanup import clean_up_store, schedule_store_cleanup

DAY = timedelta(days=1)


@pytest.fixture
def shop(world: World) -> ShopRef:
    state = world.store.extensions["devstore"]
    state.config = replace(state.config, job_seconds=0.2)  # the store's jobs finish before our first poll
    installed_with_welcome(world)
    found = world.shop()
    return ShopRef(found.id, found.domain)


def store_codes(world: World, shop: ShopRef, codes: list[str], status: str, **columns: Any) -> list[int]:
    """Codes of ours that issuance created on the store: devstore discounts and our rows naming them."""
    now = utcnow()
    with world.store.extensions["devstore"].session() as session:
        discounts = {}
        for code in codes:
            discount = Discount(id=State.new_id(), shop=SHOP, kind="basic", title=f"Welcome {code}",
                                value_type="percentage", value=Decimal("0.1"), starts_at=now - 40 * DAY,
                                ends_at=columns.get("expires_at"), usage_limit=1, combines_with={})
            session.add(discount)
            session.add(DiscountCode(id=State.new_id(), shop=SHOP, discount_id=discount.id, code=code, code_key=code))
            discounts[code] = discount.id
    with world.rt.db.session_scope() as session:
        program = session.scalars(select(Program).where(Program.shop_id == shop.id, Program.kind == "welcome")).one()
        rows = [IssuedCode(shop_id=shop.id, program_id=program.id, code=code, idempotency_key=f"test:{code}",
                           status=status, terms=terms_of(program), issued_at=now - 40 * DAY,
                           discount_gid=f"gid://shopify/DiscountCodeNode/{discounts[code]}", **columns)
                for code in codes]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def store_code(world: World, shop: ShopRef, code: str, status: str, **columns: Any) -> int:
    [code_id] = store_codes(world, shop, [code], status, **columns)
    return code_id


def expired(world: World, shop: ShopRef, code: str | list[str], days_ago: float) -> int:
    """One expired code (its id), or several (the last one's id)."""
    return store_codes(world, shop, [code] if isinstance(code, str) else code, "expired",
                       expires_at=utcnow() - days_ago * DAY)[-1]


def on_store(world: World) -> set[str]:
    return {d["codes"][0]["code"] for d in world.control("GET", "/discounts")}


def rows(world: World) -> dict[str, IssuedCode]:
    with world.rt.db.session_scope() as session:
        return {row.code: row for row in session.scalars(select(IssuedCode))}


def store_jobs(world: World) -> list[Job]:
    with world.store.extensions["devstore"].session() as session:
        return list(session.scalars(select(Job).order_by(Job.created_at)))


def usage(world: World) -> dict[str, int]:
    return world.control("GET", "/graphql_usage")


def test_unusable_codes_leave_the_store_in_bulk_after_the_grace_period(world: World, shop: ShopRef):
    expired(world, shop, [f"OLD-{n:03}" for n in range(260)], days_ago=8)
    expired(world, shop, "RECENT", days_ago=2)  # within the 7 days' grace
    store_code(world, shop, "REVOKED", "revoked", revoked_at=utcnow() - 8 * DAY, deactivated_at=utcnow() - 8 * DAY)
    store_code(world, shop, "REVOKING", "revoked", revoked_at=utcnow() - 8 * DAY)  # not yet deactivated
    store_code(world, shop, "REDEEMED", "redeemed", expires_at=utcnow() - 20 * DAY, redeemed_at=utcnow() - 30 * DAY)
    store_code(world, shop, "LIVE", "attached", expires_at=utcnow() + 20 * DAY)
    world.control("DELETE", "/graphql_usage")

    assert schedule_store_cleanup() == {"queued": 1}
    assert schedule_store_cleanup() == {"queued": 0}  # queued once
    run_worker(world.rt.redis)

    removed = {f"OLD-{n:03}" for n in range(260)} | {"REVOKED"}
    assert on_store(world) == {"RECENT", "REVOKING", "REDEEMED", "LIVE"}
    found = rows(world)
    assert len(found) == 265  # our rows and their history stay
    for code in removed:
        assert found[code].removed_from_store_at is not None and found[code].store_removal_job.startswith(
            "gid://shopify/Job/")
        assert found[code].status in ("expired", "revoked") and found[code].claimed_by is None
    for code in ("RECENT", "REVOKING", "REDEEMED", "LIVE"):
        assert found[code].removed_from_store_at is None and found[code].store_removal_job is None

    # Two bulk deletes (250 + 11 ids), not 261 deletes; each job polled until done.
    jobs = store_jobs(world)
    assert [len(job.targets) for job in jobs] == [250, 11]
    spent = usage(world)
    polls = spent["requests"] - 2
    assert spent["points"] == 2 * 10 + polls  # a mutation costs 10, a poll 1
    assert spent["points"] < 261 * 10 / 20  # one discountCodeDelete per code would cost 2,610
    assert 2 <= polls <= 10


def test_a_second_run_finds_nothing_and_calls_nothing(world: World, shop: ShopRef):
    expired(world, shop, "ONCE", days_ago=10)
    schedule_store_cleanup()
    run_worker(world.rt.redis)
    world.control("DELETE", "/graphql_usage")
    assert schedule_store_cleanup() == {"queued": 0}
    assert clean_up_store(shop.id).startswith("0 codes removed")
    assert usage(world)["requests"] == 0


def test_the_grace_period_is_a_setting(world: World, shop: ShopRef):
    expired(world, shop, "YESTERDAY", days_ago=1)
    assert schedule_store_cleanup() == {"queued": 0}
    world.rt.settings = world.rt.settings.with_overrides(store_cleanup_grace_days=0)
    assert schedule_store_cleanup() == {"queued": 1}
    run_worker(world.rt.redis)
    assert on_store(world) == set() and rows(world)["YESTERDAY"].removed_from_store_at is not None


def cleaner(world: World, shop: ShopRef, claimant: str = "test-run") -> cleanup.StoreCleaner:
    client = world.rt.admin_client(shop.id, shop.domain)
    return cleanup.StoreCleaner(world.rt.db, client, shop, claimant, timedelta(days=7))


def test_a_job_still_running_at_the_end_of_a_turn_is_polled_later_not_sent_again(world: World, shop: ShopRef):
    expired(world, shop, "SLOW", days_ago=9)
    state = world.store.extensions["devstore"]
    state.config = replace(state.config, job_seconds=60)  # still running at the first poll, however busy the machine
    first = cleaner(world, shop)
    with pytest.raises(cleanup.JobNotDone):
        first.run(deadline=time.monotonic())  # the turn ends before the store's job is done
    [row] = rows(world).values()
    assert row.store_removal_job is not None and row.removed_from_store_at is None
    assert first.outcome.jobs == 1

    with state.session() as session:  # the store's job finishes before the next turn
        session.execute(update(Job).values(run_at=utcnow()))
    second = cleaner(world, shop)  # the same job's next turn
    outcome = second.run(deadline=time.monotonic() + 20)
    assert (outcome.jobs, outcome.removed) == (0, 1)  # polled the recorded job, sent nothing again
    assert len(store_jobs(world)) == 1 and on_store(world) == set()


def test_a_job_the_store_has_forgotten_puts_its_codes_back_in_line(world: World, shop: ShopRef):
    code_id = expired(world, shop, "FORGOTTEN", days_ago=9)
    with world.rt.db.session_scope() as session:
        session.execute(update(IssuedCode).where(IssuedCode.id == code_id).values(
            store_removal_job="gid://shopify/Job/00000000-0000-4000-8000-000000000000"))
    outcome = cleaner(world, shop).run(deadline=time.monotonic() + 20)
    assert (outcome.jobs, outcome.removed) == (1, 1) and on_store(world) == set()


def test_two_runs_at_once_take_disjoint_batches(world: World, shop: ShopRef):
    expired(world, shop, [f"RACE-{n:03}" for n in range(400)], days_ago=9)
    outcomes: list[cleanup.Outcome] = []
    runs = [cleaner(world, shop, claimant=f"run-{n}") for n in range(2)]
    threads = [threading.Thread(target=lambda c=c: outcomes.append(c.run(deadline=time.monotonic() + 30)))
               for c in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    sent = [target for job in store_jobs(world) for target in job.targets]
    assert len(sent) == len(set(sent)) == 400  # every discount sent once, by one run or the other
    assert sum(o.removed for o in outcomes) == 400 and on_store(world) == set()
    with world.rt.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(IssuedCode).where(
            IssuedCode.removed_from_store_at.is_(None))) == 0


def test_throttled_answers_are_waited_out(world: World, shop: ShopRef):
    expired(world, shop, "PATIENT", days_ago=9)
    world.control("PUT", "/faults", json={"graphql_throttle": 2})
    schedule_store_cleanup()
    run_worker(world.rt.redis)
    assert on_store(world) == set() and usage(world)["throttled"] >= 2


def test_an_empty_bucket_defers_the_job_without_holding_a_worker(world: World, shop: ShopRef):
    expired(world, shop, "LATER", days_ago=9)
    ShopBuckets(world.rt.redis).observe(SHOP, {"maximumAvailable": 2000, "currentlyAvailable": 0,
                                               "restoreRate": 1})  # 10 s until a mutation fits
    schedule_store_cleanup()
    run_worker(world.rt.redis)
    assert job_status(world.rt.redis, cleanup_job_id(shop.id)).value == "scheduled"  # deferred, not failed
    assert on_store(world) == {"LATER"} and store_jobs(world) == []


def test_an_uninstalled_shop_is_left_alone(world: World, shop: ShopRef):
    expired(world, shop, "KEPT", days_ago=9)
    world.control("POST", "/uninstall")
    world.wait_delivered("app/uninstalled")
    run_worker(world.rt.redis)
    assert schedule_store_cleanup() == {"queued": 0}
    assert clean_up_store(shop.id) == "shop not installed"
    with world.store.extensions["devstore"].session() as session:
        assert session.scalar(select(func.count()).select_from(Discount)) == 1


def test_the_schedule_runs_hourly_on_the_maintenance_queue():
    from rq import cron

    import workers.cron  # noqa: F401  (registers the jobs)

    [job] = [j for j in cron._job_data_registry if j["func"] is schedule_store_cleanup]
    assert job["interval"] == 3600 and job["queue_name"] == "maintenance"
