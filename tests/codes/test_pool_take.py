"""Taking a friend code from a pool (one atomic UPDATE, never the same code twice, no Admin API); planning pools.

The pools are written straight into the database (as the top-up job leaves them); devstore is not
needed, and no Admin API client exists here at all.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text, update

from app.codes import pools
from app.db import utcnow
from app.models import CodePool, PoolCode, Program
from app.queues import job_status, pool_top_up_job_id
from tests.helpers import make_shop_with_programs, program_of

DAY = timedelta(days=1)


def a_pool(session, program: Program, codes: int, *, start=None, days: int = 7, status: str = "active") -> CodePool:
    """A pool of the program's current terms with ``codes`` available codes."""
    start = start or utcnow() - DAY
    terms = pools.pool_terms(program)
    pool = CodePool(shop_id=program.shop_id, program_id=program.id, terms=terms, terms_key=pools.terms_key(terms),
                    expires_after_days=program.expires_after_days, status=status, hands_out_from=start,
                    hands_out_until=start + days * DAY, first_code=f"FIRST-{start:%H%M%S%f}",
                    discount_gid="gid://shopify/DiscountCodeNode/1")
    session.add(pool)
    session.flush()
    session.add_all(PoolCode(shop_id=program.shop_id, program_id=program.id, pool_id=pool.id,
                             code=f"FRIEND-{pool.id}-{n:05}", status="available") for n in range(codes))
    session.commit()
    return pool


@pytest.fixture
def friend(rt, db) -> Program:
    shop = make_shop_with_programs(db, rt.cipher)
    program = program_of(db, shop, "referral_friend")
    program.active, program.pool_low_water = True, 5
    db.commit()
    return program


def take(rt, program: Program, visitor: str, **options) -> PoolCode | None:
    with rt.db.session_scope() as session:
        return pools.take_friend_code(session, program.shop_id, program.id, visitor, **options)


def test_fifty_concurrent_takers_get_fifty_different_codes(rt, db, friend):
    a_pool(db, friend, 60)
    got: list[str | None] = []
    barrier = threading.Barrier(50)

    def taker(n: int) -> None:
        barrier.wait()
        code = take(rt, friend, f"visitor-{n}", on_low=lambda *_: None)
        got.append(code.code if code else None)

    threads = [threading.Thread(target=taker, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(got) == 50 and None not in got
    assert len(set(got)) == 50
    db.expire_all()
    rows = db.scalars(select(PoolCode).where(PoolCode.status == "handed_out")).all()
    assert len(rows) == 50 and len({r.visitor for r in rows}) == 50


def test_the_same_visitor_gets_the_same_code_and_it_carries_the_pool_expiry(rt, db, friend):
    a_pool(db, friend, 10)
    first = take(rt, friend, "browser-a")
    again = take(rt, friend, "browser-a")
    other = take(rt, friend, "browser-b")
    assert first.code == again.code != other.code
    assert first.status == "handed_out" and first.visitor == "browser-a"
    assert abs((first.expires_at - first.handed_out_at) - friend.expires_after_days * DAY) < timedelta(seconds=1)


def test_one_visitor_racing_themselves_gets_one_code(rt, db, friend):
    a_pool(db, friend, 20)
    got: list[str] = []
    barrier = threading.Barrier(8)

    def tab() -> None:
        barrier.wait()
        got.append(take(rt, friend, "two-tabs", on_low=lambda *_: None).code)

    threads = [threading.Thread(target=tab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(got) == 8 and len(set(got)) == 1
    db.expire_all()
    assert len(db.scalars(select(PoolCode).where(PoolCode.status == "handed_out")).all()) == 1


def test_an_empty_pool_answers_none_and_queues_a_top_up(rt, db, friend):
    a_pool(db, friend, 1)
    assert take(rt, friend, "lucky") is not None
    assert take(rt, friend, "late") is None
    assert job_status(rt.redis, pool_top_up_job_id(friend.shop_id, friend.id)).value == "queued"


def test_no_pool_at_all_answers_none_and_queues_a_top_up(rt, db, friend):
    assert take(rt, friend, "first-ever") is None
    assert job_status(rt.redis, pool_top_up_job_id(friend.shop_id, friend.id)).value == "queued"


def test_a_top_up_is_asked_for_only_when_the_pool_falls_below_low_water(rt, db, friend):
    a_pool(db, friend, 8)  # low water is 5
    asked: list[tuple[int, int]] = []
    for n in range(3):
        take(rt, friend, f"v{n}", on_low=lambda *key: asked.append(key))
    assert asked == []  # 5 left
    take(rt, friend, "v3", on_low=lambda *key: asked.append(key))
    assert asked == [(friend.shop_id, friend.id)]  # 4 left: below the mark


def test_pools_outside_their_window_or_retired_hand_nothing_out(rt, db, friend):
    a_pool(db, friend, 3, start=utcnow() - 10 * DAY)  # window over
    a_pool(db, friend, 3, start=utcnow() + DAY)  # the successor, not yet its turn
    a_pool(db, friend, 3, status="retired")
    assert take(rt, friend, "nobody", on_low=lambda *_: None) is None


def test_the_oldest_current_pool_is_drained_first(rt, db, friend):
    older = a_pool(db, friend, 1, start=utcnow() - 2 * DAY)
    newer = a_pool(db, friend, 1, start=utcnow() - DAY)
    assert take(rt, friend, "a", on_low=lambda *_: None).pool_id == older.id
    assert take(rt, friend, "b", on_low=lambda *_: None).pool_id == newer.id


def test_another_shops_visitor_key_is_not_this_shops(rt, db, friend):
    a_pool(db, friend, 2)
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    other_program = program_of(db, other, "referral_friend")
    a_pool(db, other_program, 2)
    mine = take(rt, friend, "same-key", on_low=lambda *_: None)
    theirs = take(rt, other_program, "same-key", on_low=lambda *_: None)
    assert mine.shop_id == friend.shop_id and theirs.shop_id == other.id and mine.code != theirs.code


def test_sqlite_single_writer_takes_distinct_codes_too(sqlite_app):
    rt = sqlite_app.extensions["oncecode"]
    session = rt.db.sessions()
    shop = make_shop_with_programs(session, rt.cipher)
    program = program_of(session, shop, "referral_friend")
    a_pool(session, program, 12)
    session.close()
    got: list[str] = []

    def taker(n: int) -> None:
        got.append(take(rt, program, f"s{n}", on_low=lambda *_: None).code)

    threads = [threading.Thread(target=taker, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(got) == 10 and len(set(got)) == 10
    assert take(rt, program, "s3", on_low=lambda *_: None).code in got  # the same visitor, the same code


def test_postgresql_runs_the_take_subquery_once_as_an_init_plan(rt, db, friend):
    # An uncorrelated scalar subquery is an InitPlan: evaluated once per statement, so the UPDATE can
    # never take a second row the way an ``IN (... LIMIT n)`` semi-join may on a re-scan.
    pool = a_pool(db, friend, 3)
    statement = pools.take_statement(friend.shop_id, pool.id, "explained", utcnow(), None)
    compiled = statement.compile(dialect=db.get_bind().dialect, compile_kwargs={"literal_binds": True})
    plan = "\n".join(row[0] for row in db.execute(text(f"EXPLAIN {compiled}")))
    db.rollback()
    assert "InitPlan" in plan and "LockRows" in plan
    assert "SubPlan" not in plan  # nothing re-run per row


def test_shop_redact_erases_the_pools_and_their_visitors(rt, db, friend):
    from app import lifecycle
    from app.models import PoolBulkCreation, Shop

    pool = a_pool(db, friend, 3)
    db.add(PoolBulkCreation(shop_id=friend.shop_id, pool_id=pool.id, requested=3, done=True, attempts=1))
    db.commit()
    take(rt, friend, "someone", on_low=lambda *_: None)
    shop = db.get(Shop, friend.shop_id)
    shop.uninstalled_at, shop.access_token = utcnow(), None
    db.commit()
    assert lifecycle.redact_shop(db, shop.domain, "event-1") == "redacted"
    db.commit()
    for model in (CodePool, PoolCode, PoolBulkCreation):
        assert db.scalars(select(model)).all() == []


def plan_now(db, program: Program, now=None) -> list[pools.Fill]:
    fills = pools.plan(db, program, now or utcnow())
    db.commit()
    return fills


def live_pools(db, program: Program) -> list[CodePool]:
    db.expire_all()
    return list(db.scalars(select(CodePool).where(CodePool.program_id == program.id).order_by(CodePool.id)))


def test_plan_starts_a_pool_and_its_successor_a_day_ahead(rt, db, friend):
    friend.pool_low_water, friend.pool_size, friend.pool_window_days = 50, 400, 7
    now = utcnow()
    [fill] = plan_now(db, friend, now)
    [pool] = live_pools(db, friend)
    assert (fill.pool_id, fill.wanted) == (pool.id, 400)
    start = now.replace(second=0, microsecond=0)
    assert (pool.hands_out_from, pool.hands_out_until) == (start, start + 7 * DAY)
    assert pool.ends_at == start + (7 + friend.expires_after_days) * DAY
    assert db.scalars(select(PoolCode.status).where(PoolCode.pool_id == pool.id)).all() == ["anchor"]

    later = start + 6 * DAY + timedelta(hours=1)  # less than a day left
    fills = plan_now(db, friend, later)
    first, successor = live_pools(db, friend)
    assert successor.hands_out_from == first.hands_out_until
    assert {f.pool_id: f.wanted for f in fills} == {first.id: 400, successor.id: 50}


def test_a_successor_gets_the_whole_size_when_the_mark_is_zero(rt, db, friend):
    friend.pool_low_water, friend.pool_size, friend.pool_window_days = 0, 30, 1
    # A one-day window (from the start of the minute) ends within a day: its successor comes at once.
    assert [f.wanted for f in plan_now(db, friend)] == [30, 30]


def test_new_terms_retire_the_old_pool_only_once_the_new_one_has_codes(rt, db, friend):
    old = a_pool(db, friend, 5)
    friend.value = Decimal("20.00")
    db.commit()
    [fill] = plan_now(db, friend)
    assert fill.pool_id != old.id
    assert [p.status for p in live_pools(db, friend)] == ["active", "active"]  # the old one still hands out
    db.execute(update(PoolCode).where(PoolCode.pool_id == fill.pool_id).values(status="available"))
    db.commit()
    plan_now(db, friend)
    assert [p.status for p in live_pools(db, friend)] == ["retired", "active"]
