"""Friend code pools on devstore over HTTP: filled in bulk, rotated, topped up, expired codes deleted.

The app and devstore talk HTTP as in production; jobs run in a real rq worker. devstore's bulk
creations finish 0.2 s after they start so that the tests do not wait on them.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, update

from app.codes import pool_store, pools
from app.codes.cleanup import JobNotDone
from app.codes.issuance import ShopRef
from app.db import utcnow
from app.models import CodePool, PoolBulkCreation, PoolCode, Program
from app.queues import enqueue_pool_top_up, job_status, pool_top_up_job_id
from app.shopify.throttle import ShopBuckets
from devstore.models import Discount, DiscountCode
from devstore.state import State
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, World, installed_with_welcome, set_program
from workers.pools import expire_pool_codes, schedule_pool_expiry, schedule_pool_top_ups, top_up_pool

DAY = timedelta(days=1)


@pytest.fixture
def shop(world: World) -> ShopRef:
    state = world.store.extensions["devstore"]
    state.config = replace(state.config, job_seconds=0.2)
    installed_with_welcome(world)
    found = world.shop()
    return ShopRef(found.id, found.domain)


def friend_program(world: World, low_water: int = 20, size: int = 100, window_days: int = 7,
                   **changes: Any) -> Program:
    program = set_program(world, kind="referral_friend", **changes)
    with world.rt.db.session_scope() as session:
        session.execute(update(Program).where(Program.id == program.id).values(
            pool_low_water=low_water, pool_size=size, pool_window_days=window_days))
    return program


def usage(world: World) -> dict[str, int]:
    return world.control("GET", "/graphql_usage")


def counts(world: World, program: Program) -> dict[str, int]:
    with world.rt.db.session_scope() as session:
        return dict(session.execute(select(PoolCode.status, func.count()).where(
            PoolCode.program_id == program.id).group_by(PoolCode.status)).all())


def store_codes(world: World) -> dict[str, set[str]]:
    """The store's discounts by title: their codes."""
    with world.store.extensions["devstore"].session() as session:
        found: dict[str, set[str]] = {}
        for discount in session.scalars(select(Discount)):
            found[discount.title] = set(session.scalars(select(DiscountCode.code).where(
                DiscountCode.discount_id == discount.id)))
        return found


def pool_rows(world: World, program: Program) -> list[CodePool]:
    with world.rt.db.session_scope() as session:
        return list(session.scalars(select(CodePool).where(CodePool.program_id == program.id)
                                    .order_by(CodePool.id)))


def take(world: World, program: Program, visitor: str) -> PoolCode | None:
    with world.rt.db.session_scope() as session:
        return pools.take_friend_code(session, program.shop_id, program.id, visitor, on_low=lambda *_: None)


def fill(world: World, program: Program) -> str:
    enqueue_pool_top_up(world.rt.redis, program.shop_id, program.id)
    run_worker(world.rt.redis)
    return top_up_pool(program.shop_id, program.id)  # a second run: nothing left to do


POOL_SIZES = [1000] + [int(n) for n in os.environ.get("POOL_BENCH_SIZES", "").split(",") if n.strip()]


@pytest.mark.parametrize("size", POOL_SIZES)
def test_a_pool_costs_under_a_tenth_of_a_point_per_code(world: World, shop: ShopRef, size: int):
    """1,000 codes here; ``POOL_BENCH_SIZES=10000`` measures more (the README's figures)."""
    program = friend_program(world, low_water=200, size=size)
    world.control("DELETE", "/graphql_usage")
    assert schedule_pool_top_ups() == {"queued": 1}
    run_worker(world.rt.redis)

    assert counts(world, program) == {"anchor": 1, "available": size}  # the anchor: the discount's own code
    [pool] = pool_rows(world, program)
    [(title, on_store)] = [(t, c) for t, c in store_codes(world).items() if "friend codes" in t]
    assert title.startswith("Referred friend: friend codes") and len(on_store) == size + 1
    with world.rt.db.session_scope() as session:
        ours = set(session.scalars(select(PoolCode.code).where(PoolCode.pool_id == pool.id)))
        creations = session.scalars(select(PoolBulkCreation).where(PoolBulkCreation.pool_id == pool.id)).all()
    assert ours == on_store
    assert [(c.requested, c.imported, c.failed, c.done) for c in creations] == [(250, 250, 0, True)] * (size // 250)
    used = usage(world)
    spent, per_code = used["points"], used["points"] / size
    print(f"\npool of {size:,}: {spent} points in {used['requests']} requests, {per_code:.3f} points per friend code")
    assert per_code <= 0.1
    assert pool.points_spent == spent  # the pool counts what it cost, as the store charged it
    assert fill(world, program).startswith("0 codes added")  # full: a second run adds nothing
    assert schedule_pool_top_ups() == {"queued": 0}


def test_taking_below_low_water_is_topped_up_without_the_landing_waiting(world: World, shop: ShopRef):
    program = friend_program(world, low_water=20, size=50)
    fill(world, program)
    assert counts(world, program) == {"anchor": 1, "available": 50}
    world.control("DELETE", "/graphql_usage")
    for n in range(31):
        assert take(world, program, f"visitor-{n}") is not None
    assert usage(world)["requests"] == 0  # the landing's side never calls the Admin API
    assert counts(world, program)["available"] == 19
    assert schedule_pool_top_ups() == {"queued": 1}
    run_worker(world.rt.redis)
    assert counts(world, program) == {"anchor": 1, "available": 50, "handed_out": 31}


def test_codes_the_store_refuses_are_recorded_and_replaced(world: World, shop: ShopRef):
    program = friend_program(world, low_water=5, size=10)
    fill(world, program)
    [pool] = pool_rows(world, program)
    # A creation reserved by a run that died before sending it; one of its codes is someone else's on the store.
    clash = "FRIEND-CLASH00001"  # the merchant's own discount already has this code
    with world.store.extensions["devstore"].session() as session:
        theirs = Discount(id=State.new_id(), shop=SHOP, kind="basic", title="Merchant's own", value_type="percentage",
                          value=Decimal("0.1"), starts_at=utcnow(), usage_limit=None, combines_with={})
        session.add(theirs)
        session.add(DiscountCode(id=State.new_id(), shop=SHOP, discount_id=theirs.id, code=clash, code_key=clash))
    with world.rt.db.session_scope() as session:
        creation = PoolBulkCreation(shop_id=shop.id, pool_id=pool.id, requested=3, done=False, attempts=0)
        session.add(creation)
        session.flush()
        session.add_all(PoolCode(shop_id=shop.id, program_id=program.id, pool_id=pool.id,
                                 bulk_creation_id=creation.id, code=code, status="pending")
                        for code in (clash, "FRIEND-LEFTOVER01", "FRIEND-LEFTOVER02"))
    for n in range(8):
        take(world, program, f"v{n}")
    fill(world, program)
    with world.rt.db.session_scope() as session:
        rows = {r.code: r for r in session.scalars(select(PoolCode).where(PoolCode.program_id == program.id))}
        done = session.get(PoolBulkCreation, creation.id)
    assert rows[clash].status == "failed" and "must be unique" in rows[clash].error
    assert rows["FRIEND-LEFTOVER01"].status == "available" and rows["FRIEND-LEFTOVER01"].redeem_code_gid
    assert (done.done, done.imported, done.failed) == (True, 2, 1)
    assert counts(world, program)["available"] == 10  # the refused code replaced: topped up to the size again


def test_a_send_whose_answer_was_lost_is_sent_again_and_its_codes_kept(world: World, shop: ShopRef):
    program = friend_program(world, low_water=5, size=10)
    fill(world, program)
    [pool] = pool_rows(world, program)
    client = world.rt.admin_client(shop.id, shop.domain)
    codes = ["FRIEND-LOSTANSWR1", "FRIEND-LOSTANSWR2"]
    client.mutate("discountRedeemCodeBulkAdd", {"discountId": pool.discount_gid,
                                                "codes": [{"code": c} for c in codes]})
    time.sleep(0.4)  # the store added them; our commit of the creation's id never happened
    with world.rt.db.session_scope() as session:
        creation = PoolBulkCreation(shop_id=shop.id, pool_id=pool.id, requested=2, done=False, attempts=1)
        session.add(creation)
        session.flush()
        session.add_all(PoolCode(shop_id=shop.id, program_id=program.id, pool_id=pool.id,
                                 bulk_creation_id=creation.id, code=code, status="pending") for code in codes)
    fill(world, program)
    with world.rt.db.session_scope() as session:
        statuses = {r.code: r.status for r in session.scalars(select(PoolCode).where(PoolCode.code.in_(codes)))}
    assert statuses == dict.fromkeys(codes, "available")


def test_pools_rotate_and_a_change_of_terms_starts_a_new_pool(world: World, shop: ShopRef):
    program = friend_program(world, low_water=3, size=5, window_days=7)
    fill(world, program)
    [first] = pool_rows(world, program)
    handed = take(world, program, "early-friend")
    assert handed.pool_id == first.id

    set_program(world, kind="referral_friend", value="25")  # new terms
    assert schedule_pool_top_ups() == {"queued": 1}
    run_worker(world.rt.redis)
    old, new = pool_rows(world, program)
    assert (old.status, new.status) == ("retired", "active")
    assert new.terms["value"] == "25.00" and old.terms["value"] == "10.00"
    assert take(world, program, "later-friend").pool_id == new.id
    again = take(world, program, "early-friend")
    assert again.code == handed.code and again.expires_at == handed.expires_at  # keeps its terms and expiry

    # A day before the window ends, the successor is made ready; once the window is over, it hands out.
    with world.rt.db.session_scope() as session:
        session.execute(update(CodePool).where(CodePool.id == new.id).values(
            hands_out_from=utcnow() - 7 * DAY + timedelta(hours=2), hands_out_until=utcnow() + timedelta(hours=2)))
    assert schedule_pool_top_ups() == {"queued": 1}
    run_worker(world.rt.redis)
    _, current, successor = pool_rows(world, program)
    assert successor.hands_out_from == current.hands_out_until
    assert successor.ends_at == successor.hands_out_until + program.expires_after_days * DAY
    assert counts(world, program)["available"] >= 3 + 3


def test_expired_codes_and_ended_pools_leave_the_store(world: World, shop: ShopRef):
    program = friend_program(world, low_water=3, size=300)
    fill(world, program)
    [pool] = pool_rows(world, program)
    taken = [take(world, program, f"v{n}") for n in range(4)]
    with world.rt.db.session_scope() as session:  # three of them reach their own end
        session.execute(update(PoolCode).where(PoolCode.id.in_([c.id for c in taken[:3]])).values(
            expires_at=utcnow() - timedelta(minutes=1)))
    world.control("DELETE", "/graphql_usage")
    assert schedule_pool_expiry() == {"queued": 1}
    run_worker(world.rt.redis)
    gone = {c.code for c in taken[:3]}
    on_store = next(codes for title, codes in store_codes(world).items() if "friend codes" in title)
    assert not gone & on_store and taken[3].code in on_store and len(on_store) == 301 - 3
    with world.rt.db.session_scope() as session:
        rows = {r.code: r for r in session.scalars(select(PoolCode).where(PoolCode.program_id == program.id))}
    assert all(rows[c].status == "removed" and rows[c].redeem_code_gid for c in gone)
    assert rows[taken[3].code].status == "handed_out"
    spent = usage(world)["points"]
    print(f"\n3 expired codes deleted: {spent} points")
    # Their ids read from their bulk creation up to the newest of them (1 + 2 + 3 x 1.2 points), one
    # delete (10), its polls (1 each): not a page of 250 (303 points).
    assert spent < 30
    assert schedule_pool_expiry() == {"queued": 0}

    # The pool discount ended more than the grace period ago: deleted whole, its codes marked removed.
    with world.rt.db.session_scope() as session:
        session.execute(update(CodePool).where(CodePool.id == pool.id).values(
            hands_out_until=utcnow() - 40 * DAY, hands_out_from=utcnow() - 47 * DAY, ends_at=utcnow() - 10 * DAY))
    assert expire_pool_codes(shop.id).startswith("0 friend codes expired, 0 deleted from the store, 1 pool")
    assert not any("friend codes" in title for title in store_codes(world))
    assert counts(world, program) == {"removed": 301}
    assert pool_rows(world, program)[0].status == "removed"


def test_the_schedules_are_registered():
    from rq import cron

    import workers.cron  # noqa: F401  (registers the jobs)

    registered = {j["func"]: j for j in cron._job_data_registry}
    assert registered[schedule_pool_top_ups]["interval"] == 60
    assert registered[schedule_pool_expiry]["interval"] == 900


def test_a_creation_still_running_at_the_end_of_a_turn_is_polled_later_not_sent_again(world: World, shop: ShopRef):
    state = world.store.extensions["devstore"]
    state.config = replace(state.config, job_seconds=3)  # still running at the first poll, however busy the machine
    program = friend_program(world, low_water=5, size=20)
    filler = pool_store.PoolFiller(world.rt.db, world.rt.admin_client(shop.id, shop.domain), shop)
    with pytest.raises(JobNotDone):
        filler.top_up(program.id, deadline=time.monotonic())  # the turn ends before the store's creation is done
    assert counts(world, program) == {"anchor": 1, "pending": 20}
    again = pool_store.PoolFiller(world.rt.db, world.rt.admin_client(shop.id, shop.domain), shop)
    outcome = again.top_up(program.id, deadline=time.monotonic() + 20)
    assert outcome.sends == 0 and outcome.created == 20  # polled the recorded creation, sent nothing again
    assert counts(world, program) == {"anchor": 1, "available": 20}
    with world.rt.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(PoolBulkCreation)) == 1


def test_an_empty_bucket_defers_the_top_up_without_holding_a_worker(world: World, shop: ShopRef):
    program = friend_program(world, low_water=5, size=20)
    ShopBuckets(world.rt.redis).observe(SHOP, {"maximumAvailable": 2000, "currentlyAvailable": 0,
                                               "restoreRate": 1})  # 10 s until a mutation fits
    world.control("DELETE", "/graphql_usage")
    enqueue_pool_top_up(world.rt.redis, shop.id, program.id)
    run_worker(world.rt.redis)
    assert job_status(world.rt.redis, pool_top_up_job_id(shop.id, program.id)).value == "scheduled"
    assert usage(world)["requests"] == 0 and pool_rows(world, program)[0].discount_gid is None


def test_a_second_top_up_while_one_runs_does_nothing(world: World, shop: ShopRef):
    program = friend_program(world)
    world.rt.redis.set(f"oncecode:lock:pool-top-up:{shop.id}:{program.id}", "another-job")
    world.control("DELETE", "/graphql_usage")
    assert top_up_pool(shop.id, program.id) == "another top-up is running"
    assert usage(world)["requests"] == 0


def test_a_program_that_is_off_gets_no_pool(world: World, shop: ShopRef):
    program = friend_program(world, active=False)
    assert schedule_pool_top_ups() == {"queued": 0}
    assert top_up_pool(shop.id, program.id).startswith("0 codes added") and pool_rows(world, program) == []


def test_deleting_expired_codes_costs_about_a_point_and_a_quarter_each(world: World, shop: ShopRef):
    program = friend_program(world, low_water=3, size=260)
    fill(world, program)
    taken = [take(world, program, f"v{n}") for n in range(250)]
    with world.rt.db.session_scope() as session:
        session.execute(update(PoolCode).where(PoolCode.id.in_([c.id for c in taken])).values(
            expires_at=utcnow() - timedelta(minutes=1)))
    world.control("DELETE", "/graphql_usage")
    assert expire_pool_codes(shop.id).startswith("250 friend codes expired, 250 deleted from the store")
    spent = usage(world)["points"]
    print(f"\n250 expired codes deleted: {spent} points, {spent / 250:.2f} a code")
    # Their ids read from their creation (2 + 250 x 1.2 + 1), one delete (10), a few polls.
    assert spent / 250 <= 1.3


def test_a_pool_whose_discount_the_merchant_deleted_is_replaced(world: World, shop: ShopRef):
    program = friend_program(world, low_water=5, size=10)
    fill(world, program)
    [pool] = pool_rows(world, program)
    _delete_on_store(world, pool.discount_gid)
    for n in range(6):
        take(world, program, f"v{n}")
    assert top_up_pool(shop.id, program.id).startswith("refused: the store refused a bulk add")
    gone = pool_rows(world, program)[0]
    assert gone.status == "removed" and "Code discount does not exist" in gone.last_error
    assert take(world, program, "after") is None  # its codes no longer work: none is handed out
    assert schedule_pool_top_ups() == {"queued": 1}
    run_worker(world.rt.redis)
    _, fresh = pool_rows(world, program)
    assert fresh.status == "active" and take(world, program, "after").pool_id == fresh.id


def _delete_on_store(world: World, gid: str) -> None:
    """The merchant deletes the discount in Shopify's admin."""
    with world.store.extensions["devstore"].session() as session:
        session.delete(session.get(Discount, int(gid.rsplit("/", 1)[1])))  # its codes go with it


def test_a_free_shipping_pool_and_its_terms_on_the_store(world: World, shop: ShopRef):
    program = friend_program(world, low_water=2, size=5, value_type="free_shipping", minimum_subtotal="30")
    fill(world, program)
    [pool] = pool_rows(world, program)
    with world.store.extensions["devstore"].session() as session:
        discount = session.get(Discount, int(pool.discount_gid.rsplit("/", 1)[1]))
        assert (discount.kind, discount.usage_limit, discount.applies_once_per_customer) == ("free_shipping", 1, True)
        assert discount.ends_at.replace(tzinfo=None) == pool.ends_at.replace(tzinfo=None, microsecond=0)
        assert discount.minimum_subtotal == Decimal("30")
    assert pool.terms["value_type"] == "free_shipping" and pool.terms["lock_to_customer"] is False


def test_each_friend_code_works_once_at_the_stores_checkout(world: World, shop: ShopRef):
    program = friend_program(world, low_water=2, size=5)
    fill(world, program)
    mine, theirs = take(world, program, "friend-1"), take(world, program, "friend-2")
    first = world.control("POST", "/orders", json={"amount": "50.00", "codes": [mine.code],
                                                   "email": "one@example.com"})
    assert [c["code"] for c in first["discount_codes"]] == [mine.code]
    again = requests.post(f"{world.store_url}/_devstore/stores/{SHOP}/orders", timeout=10,
                          json={"amount": "50.00", "codes": [mine.code], "email": "two@example.com"})
    assert again.status_code == 409 and again.json()["rule"] == "usage_limit"  # single use, per code
    other = world.control("POST", "/orders", json={"amount": "50.00", "codes": [theirs.code],
                                                   "email": "one@example.com"})
    assert [c["code"] for c in other["discount_codes"]] == [theirs.code]  # another code of the same pool works


def test_expired_codes_of_a_discount_deleted_on_the_store_are_simply_marked_removed(world: World, shop: ShopRef):
    program = friend_program(world, low_water=2, size=5)
    fill(world, program)
    [pool] = pool_rows(world, program)
    code = take(world, program, "v")
    with world.rt.db.session_scope() as session:
        session.execute(update(PoolCode).where(PoolCode.id == code.id).values(
            expires_at=utcnow() - timedelta(minutes=1), redeem_code_gid="gid://shopify/DiscountRedeemCode/1"))
    _delete_on_store(world, pool.discount_gid)
    assert "1 pool discounts deleted" in expire_pool_codes(shop.id)
    assert pool_rows(world, program)[0].status == "removed" and set(counts(world, program)) == {"removed"}


def test_two_top_ups_racing_without_the_lock_never_put_a_code_on_the_store_twice(world: World, shop: ShopRef):
    program = friend_program(world, low_water=100, size=300)
    outcomes: list[pool_store.TopUp] = []
    errors: list[BaseException] = []

    def run() -> None:
        filler = pool_store.PoolFiller(world.rt.db, world.rt.admin_client(shop.id, shop.domain), shop)
        try:
            outcomes.append(filler.top_up(program.id, deadline=time.monotonic() + 30))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    [pool] = pool_rows(world, program)  # one pool, one discount
    [on_store] = [codes for title, codes in store_codes(world).items() if "friend codes" in title]
    with world.rt.db.session_scope() as session:
        ours = list(session.scalars(select(PoolCode.code).where(PoolCode.pool_id == pool.id,
                                                              PoolCode.status.in_(("available", "anchor")))))
        assert session.scalar(select(func.count()).select_from(PoolBulkCreation).where(
            PoolBulkCreation.done.is_(False))) == 0
    assert sorted(ours) == sorted(on_store) and len(ours) == len(set(ours))
    assert 301 <= len(ours) <= 601  # the lock spares the duplicate work; without it, at most twice the codes
