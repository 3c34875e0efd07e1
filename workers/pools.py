"""Friend code pools: keep them topped up and rotated, delete expired codes from the store (``app.codes.pools``)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from redis import Redis
from rq import Retry, get_current_job

from app import runtime
from app.codes import pool_store, pools
from app.db import utcnow
from app.queues import enqueue_pool_expiry, enqueue_pool_top_up
from workers.codes import MAX_RETURNS, TURN_SECONDS, installed_shop
from workers.deferral import store_turn

log = logging.getLogger(__name__)

LOCK_SECONDS = 300  # outlasts a turn and a deferral; a killed job's lock lapses after this


def _claimant(name: str) -> str:
    job = get_current_job()
    return job.id if job is not None else f"{name}-inline"


def _lock(redis: Redis, key: str, claimant: str) -> bool:
    """Take (or take back, for the same job id) a lock that only spares duplicate work."""
    if redis.set(key, claimant, nx=True, ex=LOCK_SECONDS):
        return True
    if _holder(redis, key) == claimant:
        redis.expire(key, LOCK_SECONDS)
        return True
    return False


def _holder(redis: Redis, key: str) -> str | None:
    held = redis.get(key)
    return held.decode() if isinstance(held, bytes) else held


def _unlock(redis: Redis, key: str, claimant: str) -> None:
    if _holder(redis, key) == claimant:
        redis.delete(key)


def top_up_pool(shop_id: int, program_id: int) -> str | Retry:
    """Bring a referral program's friend code pools up to their size and rotate them (``pools.plan``).

    Gives its worker back when a turn (``TURN_SECONDS``) ends with a bulk creation still running, and is
    deferred while the shop's bucket is empty; the same job id (``pool-top-up-<shop>-<program>``) then
    carries on from what is recorded. Safe to run twice or concurrently: a lock per shop and program
    spares duplicate work; without it, pools are keyed by their terms and window, every send is recorded
    before it is made and polled, never sent again, and a code sent twice is recognised on the store.
    """
    rt = runtime.current()
    shop = installed_shop(rt, shop_id)
    if shop is None:
        return "shop not installed"
    claimant = _claimant(f"pool-top-up-{shop_id}-{program_id}")
    lock = f"oncecode:lock:pool-top-up:{shop_id}:{program_id}"
    if not _lock(rt.redis, lock, claimant):
        return "another top-up is running"
    def turn() -> pool_store.TopUp:
        filler = pool_store.PoolFiller(rt.db, rt.admin_client(shop.id, shop.domain), shop)
        return filler.top_up(program_id, deadline=time.monotonic() + TURN_SECONDS)

    try:
        outcome, answer = store_turn(shop.domain, turn, MAX_RETURNS, "pool top-up waits for a bulk creation")
    except pool_store.PoolRefused as exc:
        _unlock(rt.redis, lock, claimant)
        log.warning("pool top-up refused by the store", extra={"shop": shop.domain, "reason": str(exc)})
        return f"refused: {exc}"
    if outcome is None:
        return answer  # type: ignore[return-value]
    _unlock(rt.redis, lock, claimant)
    summary = outcome.summary()
    log.info("pool topped up", extra={"shop": shop.domain, "status": summary})
    return summary


def expire_pool_codes(shop_id: int) -> str | Retry:
    """Delete the shop's handed-out friend codes past their own expiry from the store, and its pool
    discounts that ended ``STORE_CLEANUP_GRACE_DAYS`` ago (``pool_store.PoolSweeper``).

    Safe to run twice or concurrently: a store job recorded on rows is polled, never sent again;
    deleting codes or discounts that are gone already deletes nothing; the lock spares duplicate work.
    """
    rt = runtime.current()
    shop = installed_shop(rt, shop_id)
    if shop is None:
        return "shop not installed"
    claimant = _claimant(f"pool-expiry-{shop_id}")
    lock = f"oncecode:lock:pool-expiry:{shop_id}"
    if not _lock(rt.redis, lock, claimant):
        return "another expiry run is running"
    grace = timedelta(days=rt.settings.store_cleanup_grace_days)
    def turn() -> pool_store.Sweep:
        sweeper = pool_store.PoolSweeper(rt.db, rt.admin_client(shop.id, shop.domain), shop, grace)
        return sweeper.run(deadline=time.monotonic() + TURN_SECONDS)

    outcome, answer = store_turn(shop.domain, turn, MAX_RETURNS, "friend code expiry waits for a store job")
    if outcome is None:
        return answer  # type: ignore[return-value]
    _unlock(rt.redis, lock, claimant)
    summary = outcome.summary()
    log.info("friend code expiry done", extra={"shop": shop.domain, "status": summary})
    return summary


def schedule_pool_top_ups() -> dict[str, int]:
    """Queue the top-up of every active referral-friend program of an installed shop whose pools need it
    (below low water, due to rotate, terms changed, a creation unfinished). rq cron runs this every minute.

    Safe to run twice or concurrently: a program whose top-up is still live is not queued again.
    """
    rt = runtime.current()
    now = utcnow()
    with rt.db.session_scope() as session:
        programs = session.scalars(pools.pooled_programs())
        due = [(p.shop_id, p.id) for p in programs if pools.needs_attention(session, p, now)]
    queued = sum(enqueue_pool_top_up(rt.redis, shop_id, program_id) for shop_id, program_id in due)
    if queued:
        log.info("pool top-ups queued", extra={"status": f"{queued} programs"})
    return {"queued": queued}


def schedule_pool_expiry() -> dict[str, int]:
    """Queue the expiry run for every installed shop with friend codes or pool discounts to delete (rq
    cron runs this every 15 minutes). Safe to run twice: a shop whose run is live is not queued again."""
    rt = runtime.current()
    grace = timedelta(days=rt.settings.store_cleanup_grace_days)
    with rt.db.session_scope() as session:
        shop_ids = pools.shops_with_expiry_work(session, utcnow(), grace)
    queued = sum(enqueue_pool_expiry(rt.redis, shop_id) for shop_id in shop_ids)
    return {"queued": queued}
