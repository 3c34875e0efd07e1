"""Friend code pools: many single-use codes on one discount, created in bulk ahead of the visitors.

A referred friend is not a Shopify customer yet, so their code cannot be locked to them; it can be
single use. Shopify applies a discount's ``usageLimit`` and ``appliesOncePerCustomer`` to each of its
redeem codes on its own, so one **pool discount** (``usageLimit: 1``) holds thousands of single-use
codes, added 250 at a time with ``discountRedeemCodeBulkAdd``: 10 points per 250 codes and a poll,
about 0.05 points a code, where a discount per code costs ~21.

The parts:

- ``take_friend_code`` (the landing, no Admin API): one ``UPDATE`` hands the oldest available code
  of the program's current pool to a visitor, or returns the visitor's earlier code. Running low
  queues a top-up; an empty pool answers None (and queues one).
- ``pool_store.PoolFiller.top_up`` (a job): plans the program's pools (``plan``) and fills them:
  creates the pool discount with its first code, draws codes in the program's format, reserves them
  here as ``pending``, sends each 250 with ``discountRedeemCodeBulkAdd`` (every send recorded first in
  ``pool_bulk_creations``), polls ``discountRedeemCodeBulkCreation`` until ``done`` and marks the
  codes ``available``. Only a creation that reports failures has its codes read (with their errors,
  1.2 points a code); the failed ones are marked ``failed`` and replaced by fresh ones.
- Rotation: a pool hands codes out for ``pool_window_days`` (default 7); its discount ends
  ``expires_after_days`` after that window, so a code handed out at its last moment lives its full
  expiry. The next pool is created a day ahead so the landing never goes without. Changing the
  program's offer, expiry or code format starts a new pool at once; the old one hands out until the
  new one has codes, and codes handed out keep the terms of their pool.
- ``pool_store.PoolSweeper.run`` (a job): a handed-out code past its own expiry is deleted from the
  store (``discountCodeRedeemCodeBulkDelete``, 250 ids a job; a code's id is read from its bulk
  creation, which lists codes in the order sent, only as far as the newest code due and from where the
  last read stopped: 1.2 points a code); a pool discount whose end passed ``STORE_CLEANUP_GRACE_DAYS``
  ago is deleted whole (``discountCodeBulkDelete``). The discount's own code (the pool's *anchor*) is
  in no creation, so it is never handed out.

Safe to run twice or concurrently: pools are keyed by (shop, program, terms, window start) and
inserted ignoring conflicts; a send is recorded before it is made and a recorded creation is polled,
never sent again; a creation whose answer was lost is sent again with the same codes, and a code it
reports as not unique is looked up and kept when it is on this pool's discount. The jobs' locks only
spare duplicate work.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.codes.generator import CodeFormat
from app.codes.issuance import MAX_CODE_TRIES, terms_of
from app.codes.programs import code_format, get_program
from app.db import insert_ignoring_conflict, utcnow
from app.errors import BadRequest
from app.models import CodePool, PoolBulkCreation, PoolCode, Program, Shop
from app.params import shown
from app.shopify.client import AdminAPIError

log = logging.getLogger(__name__)

ROTATE_AHEAD = timedelta(days=1)  # the next pool is created this long before the current one stops handing out
TERMS_KEYS = ("value_type", "value", "minimum_subtotal", "combines_with", "expires_after_days", "code_format")


# --- terms ----------------------------------------------------------------------------------------


def pool_terms(program: Program) -> dict[str, Any]:
    """The program's offer as a pool freezes it: never locked to a customer, with expiry and code format."""
    fmt = code_format(program)
    return terms_of(program) | {
        "lock_to_customer": False,
        "expires_after_days": program.expires_after_days,
        "code_format": {"prefix": fmt.prefix, "length": fmt.length, "alphabet": fmt.alphabet, "pattern": fmt.pattern},
    }


def terms_key(terms: dict[str, Any]) -> str:
    """A digest of what makes two pools' codes differ (the program's name and landing path do not)."""
    wanted = {name: terms.get(name) for name in TERMS_KEYS}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()


def pool_format(pool: CodePool) -> CodeFormat:
    return CodeFormat(**pool.terms["code_format"])


def pool_tag(pool_id: int) -> str:
    """The tag that marks a discount on the store as this pool's."""
    return f"oncecode-pool-{pool_id}"


# --- the landing's side: no Admin API -----------------------------------------------------------


def _hands_out(now: datetime) -> Any:
    return and_(CodePool.status == "active", CodePool.hands_out_from <= now, CodePool.hands_out_until > now)


def take_friend_code(session: Session, shop_id: int, program_id: int, visitor_key: str,
                     now: datetime | None = None,
                     on_low: Callable[[int, int], object] | None = None,
                     link_id: int | None = None) -> PoolCode | None:
    """The visitor's friend code of this program: the one they had already, or a fresh one from the
    current pool; None when the pool is empty. Never calls the Admin API.

    A fresh code is taken with one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED)
    AND status = 'available'``: the subquery is uncorrelated, so PostgreSQL runs it once (an InitPlan),
    and concurrent takers skip each other's locked row instead of waiting for it, so no two visitors
    ever get the same code. SQLite (``make run``) has no row locks: one writer at a time runs the whole
    statement, and the status condition keeps it correct there too. A visitor racing themselves (two
    tabs) hits the unique (shop, program, visitor) index and gets the code the other request took.

    ``on_low(shop_id, program_id)`` is called when the pool is empty or this take left it below its
    low-water mark (``queue_top_up`` by default: a debounced enqueue of the top-up job). ``link_id``
    records the referral link whose landing takes a fresh code (for its daily cap and metrics).
    The caller commits.
    """
    now = now or utcnow()
    mine = _visitor_code(session, shop_id, program_id, visitor_key)
    if mine is not None:
        return mine
    on_low = on_low or queue_top_up
    pools = session.execute(select(CodePool.id, CodePool.expires_after_days).where(
        CodePool.shop_id == shop_id, CodePool.program_id == program_id, _hands_out(now))
        .order_by(CodePool.hands_out_from, CodePool.id)).all()
    for pool_id, days in pools:
        statement = take_statement(shop_id, pool_id, visitor_key, now, now + timedelta(days=days) if days else None,
                                   link_id)
        for _ in range(3):  # an empty answer while codes remain: the one we saw was taken meanwhile
            try:
                with session.begin_nested():
                    taken = session.scalars(statement).one_or_none()
            except IntegrityError:  # the same visitor was given a code by a concurrent request
                return _visitor_code(session, shop_id, program_id, visitor_key)
            if taken is not None:
                if _below_low_water(session, shop_id, program_id, pool_id):
                    on_low(shop_id, program_id)
                return taken
            if not _has_available(session, pool_id):
                break
    on_low(shop_id, program_id)
    return None


def take_statement(shop_id: int, pool_id: int, visitor_key: str, now: datetime,
                   expires_at: datetime | None, link_id: int | None = None) -> Any:
    """``UPDATE pool_codes SET status = 'handed_out', ... WHERE id = (SELECT id ... WHERE status = 'available'
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) AND status = 'available' RETURNING *``."""
    oldest = (select(PoolCode.id).where(PoolCode.pool_id == pool_id, PoolCode.status == "available")
              .order_by(PoolCode.id).limit(1).with_for_update(skip_locked=True).scalar_subquery())
    return (update(PoolCode).where(PoolCode.id == oldest, PoolCode.status == "available", PoolCode.shop_id == shop_id)
            .values(status="handed_out", visitor=visitor_key, handed_out_at=now, expires_at=expires_at,
                    link_id=link_id)
            .returning(PoolCode).execution_options(synchronize_session=False))


def _visitor_code(session: Session, shop_id: int, program_id: int, visitor_key: str) -> PoolCode | None:
    return session.scalars(select(PoolCode).where(PoolCode.shop_id == shop_id, PoolCode.program_id == program_id,
                                                  PoolCode.visitor == visitor_key)).one_or_none()


def _has_available(session: Session, pool_id: int) -> bool:
    return session.scalar(select(PoolCode.id).where(PoolCode.pool_id == pool_id, PoolCode.status == "available")
                          .limit(1)) is not None


def _below_low_water(session: Session, shop_id: int, program_id: int, pool_id: int) -> bool:
    """Whether fewer than the program's low-water mark of codes are left in the pool: one look at the
    partial index, at most ``pool_low_water`` entries deep."""
    low = session.scalar(select(Program.pool_low_water).where(Program.shop_id == shop_id, Program.id == program_id))
    if not low:
        return False
    probe = session.scalar(select(PoolCode.id).where(PoolCode.pool_id == pool_id, PoolCode.status == "available")
                           .order_by(PoolCode.id).offset(low - 1).limit(1))
    return probe is None


def queue_top_up(shop_id: int, program_id: int) -> None:
    """Queue the pool's top-up, at most once a ``TOP_UP_DEBOUNCE_SECONDS`` per program (the landing's
    hook). Redis trouble is logged, never raised: the scheduled sweep queues the top-up anyway."""
    from redis.exceptions import RedisError

    from app import runtime
    from app.queues import enqueue_pool_top_up

    redis = runtime.current().redis
    try:
        if redis.set(f"oncecode:pool-low:{shop_id}:{program_id}", "1", nx=True, ex=TOP_UP_DEBOUNCE_SECONDS):
            enqueue_pool_top_up(redis, shop_id, program_id)
    except RedisError as exc:
        log.warning("pool top-up not queued, Redis unavailable; the sweep will queue it",
                    extra={"shop_id": shop_id, "reason": type(exc).__name__})


TOP_UP_DEBOUNCE_SECONDS = 30


# --- planning: which pools exist and how full they should be --------------------------------------


@dataclass(frozen=True)
class Fill:
    pool_id: int
    wanted: int  # codes to add (available and pending count as there)


def _count(session: Session, pool_id: int, *statuses: str) -> int:
    return session.scalar(select(func.count()).select_from(PoolCode).where(
        PoolCode.pool_id == pool_id, PoolCode.status.in_(statuses))) or 0


def plan(session: Session, program: Program, now: datetime) -> list[Fill]:
    """Bring the program's pools in line with its terms and the clock; what each pool still needs.

    Pools whose window is over are retired. With no pool of the current terms handing out now, one is
    started now; when the newest ends within ``ROTATE_AHEAD``, its successor is started to take over at
    its end. The pool handing out now is filled to ``pool_size`` once it is below ``pool_low_water``
    (or not yet full when new); a successor waiting for its turn gets ``pool_low_water`` codes (its size
    when the mark is 0). Pools
    of older terms are retired as soon as a pool of the current terms has codes to hand out.
    """
    terms = pool_terms(program)
    key = terms_key(terms)
    pools = list(session.scalars(select(CodePool).where(
        CodePool.shop_id == program.shop_id, CodePool.program_id == program.id, CodePool.status == "active")
        .order_by(CodePool.hands_out_from, CodePool.id)))
    for pool in pools:
        if pool.hands_out_until <= now:
            pool.status = "retired"
    live = [p for p in pools if p.status == "active"]
    same = [p for p in live if p.terms_key == key]
    window = timedelta(days=program.pool_window_days)
    if not any(p.hands_out_from <= now for p in same):
        # From the start of the minute: two plans racing without the job's lock start the same pool.
        start = now.replace(second=0, microsecond=0)
        if session.scalar(select(CodePool.id).where(
                CodePool.shop_id == program.shop_id, CodePool.program_id == program.id, CodePool.terms_key == key,
                CodePool.hands_out_from == start, CodePool.status != "active")) is not None:
            start = now  # a pool of this minute was retired or removed already (its discount deleted, say)
        same.insert(0, _start_pool(session, program, terms, key, start, start + window))
    latest = max(same, key=lambda p: p.hands_out_until)
    if latest.hands_out_until - now < ROTATE_AHEAD:
        same.append(_start_pool(session, program, terms, key, latest.hands_out_until,
                                latest.hands_out_until + window))
    fills = []
    for pool in same:
        there = _count(session, pool.id, "available", "pending")
        if pool.hands_out_from <= now:
            new = _count(session, pool.id, "handed_out") == 0
            target = program.pool_size if there < program.pool_low_water or new else there
        else:  # its turn is to come: enough to start with, the rest once it hands out
            target = program.pool_low_water or program.pool_size
        if target > there:
            fills.append(Fill(pool.id, target - there))
    if any(_count(session, p.id, "available") for p in same if p.hands_out_from <= now):
        for pool in live:
            if pool.terms_key != key:
                pool.status = "retired"
    session.flush()
    return fills


def _start_pool(session: Session, program: Program, terms: dict[str, Any], key: str, start: datetime,
                until: datetime) -> CodePool:
    """The pool of these terms starting at ``start``, created now unless a concurrent plan did, with its
    first code reserved (the code the discount is created with)."""
    days = terms["expires_after_days"]
    fmt = code_format(program)
    insert_ignoring_conflict(
        session, CodePool, ["shop_id", "program_id", "terms_key", "hands_out_from"], shop_id=program.shop_id,
        program_id=program.id, terms=terms, terms_key=key, expires_after_days=days, status="active",
        hands_out_from=start, hands_out_until=until, ends_at=until + timedelta(days=days) if days else None,
        first_code=fmt.generate(), create_attempts=0, points_spent=0, created_at=utcnow(), updated_at=utcnow())
    pool = session.scalars(select(CodePool).where(
        CodePool.shop_id == program.shop_id, CodePool.program_id == program.id, CodePool.terms_key == key,
        CodePool.hands_out_from == start)).one()
    for _ in range(MAX_CODE_TRIES):
        try:
            with session.begin_nested():
                insert_ignoring_conflict(session, PoolCode, ["shop_id", "code"], shop_id=pool.shop_id,
                                         program_id=pool.program_id, pool_id=pool.id, code=pool.first_code,
                                         status="anchor")
        except IntegrityError:
            continue
        if session.scalar(select(PoolCode.pool_id).where(PoolCode.shop_id == pool.shop_id,
                                                         PoolCode.code == pool.first_code)) == pool.id:
            return pool
        pool.first_code = fmt.generate()  # another pool's code: draw again
    raise AdminAPIError(f"could not draw a first code for pool {pool.id}")


# --- what the expiry sweep looks for ----------------------------------------------------------------


def expired_codes(now: datetime) -> Any:
    return and_(PoolCode.status == "handed_out", PoolCode.expires_at.is_not(None), PoolCode.expires_at <= now)


def pools_ended(now: datetime, grace: timedelta) -> Any:
    """Pools whose discount ended at least ``grace`` ago (a pool without expiry stays, like a code without)."""
    return and_(CodePool.status != "removed", CodePool.ends_at.is_not(None), CodePool.ends_at <= now - grace)


def codes_to_delete() -> Any:
    return and_(PoolCode.status == "expired", PoolCode.removed_at.is_(None))


# --- what the merchant and the sweeps read ---------------------------------------------------------


def pool_status(session: Session, shop_id: int, program_id: int, now: datetime | None = None) -> dict[str, Any]:
    """The program's pools as the CLI and API show them: counts by status, the current window, points."""
    now = now or utcnow()
    program = get_program(session, shop_id, program_id)
    pools = list(session.scalars(select(CodePool).where(CodePool.shop_id == shop_id,
                                                        CodePool.program_id == program.id)
                                 .order_by(CodePool.hands_out_from, CodePool.id)))
    counts: dict[int, dict[str, int]] = {p.id: {} for p in pools}
    for pool_id, status, number in session.execute(
            select(PoolCode.pool_id, PoolCode.status, func.count()).where(PoolCode.shop_id == shop_id,
                                                                          PoolCode.program_id == program.id)
            .group_by(PoolCode.pool_id, PoolCode.status)):
        counts[pool_id][status] = number
    current = [p for p in pools if p.status == "active" and p.hands_out_from <= now < p.hands_out_until]
    creations = session.execute(select(func.count(), func.coalesce(func.sum(PoolBulkCreation.imported), 0),
                                       func.coalesce(func.sum(PoolBulkCreation.failed), 0)).where(
        PoolBulkCreation.shop_id == shop_id, PoolBulkCreation.pool_id.in_([p.id for p in pools] or [0]))).one()

    def total(status: str, among: list[CodePool]) -> int:
        return sum(counts[p.id].get(status, 0) for p in among)

    spent = sum(p.points_spent for p in pools)
    made = sum(total(s, pools) for s in ("available", "handed_out", "expired", "removed"))
    return {
        "program_id": program.id,
        "active": program.active,
        "settings": {"low_water": program.pool_low_water, "size": program.pool_size,
                     "window_days": program.pool_window_days},
        "available": total("available", current),
        "pending": total("pending", pools),
        "handed_out": total("handed_out", pools),  # given to visitors and not yet expired
        "expired": total("expired", pools),
        "failed": total("failed", pools),
        "current_window": None if not current else {
            "from": current[0].hands_out_from.isoformat(), "until": current[-1].hands_out_until.isoformat()},
        "bulk_creations": {"count": creations[0], "imported": int(creations[1]), "failed": int(creations[2])},
        "points_spent": spent,
        "points_per_code": round(spent / made, 4) if made else None,
        "pools": [{"id": p.id, "status": p.status, "from": p.hands_out_from.isoformat(),
                   "until": p.hands_out_until.isoformat(), "ends_at": p.ends_at.isoformat() if p.ends_at else None,
                   "discount_id": p.discount_gid, "codes": counts[p.id], "points_spent": p.points_spent,
                   "error": p.last_error} for p in pools],
    }


def pooled_programs() -> Select[tuple[Program]]:
    """Active referral-friend programs of installed shops: those whose pools the sweep looks after."""
    return (select(Program).join(Shop, Shop.id == Program.shop_id)
            .where(Program.kind == "referral_friend", Program.active.is_(True), Shop.uninstalled_at.is_(None),
                   Shop.access_token.is_not(None)).order_by(Program.id))


def needs_attention(session: Session, program: Program, now: datetime) -> bool:
    """Whether the program's pools need the top-up job: no pool of its terms hands out now, the current
    one is below its low-water mark, the successor is due, or a creation is unfinished."""
    key = terms_key(pool_terms(program))
    pools = list(session.scalars(select(CodePool).where(
        CodePool.shop_id == program.shop_id, CodePool.program_id == program.id, CodePool.status == "active")))
    same = [p for p in pools if p.terms_key == key and p.hands_out_until > now]
    current = [p for p in same if p.hands_out_from <= now]
    if not current or len(same) != len(pools) or max(p.hands_out_until for p in same) - now < ROTATE_AHEAD:
        return True
    if sum(_count(session, p.id, "available", "pending") for p in current) < program.pool_low_water:
        return True
    return session.scalar(select(PoolBulkCreation.id).where(
        PoolBulkCreation.shop_id == program.shop_id, PoolBulkCreation.done.is_(False),
        PoolBulkCreation.pool_id.in_([p.id for p in pools])).limit(1)) is not None


def shops_with_expiry_work(session: Session, now: datetime, grace: timedelta) -> list[int]:
    """Installed shops with handed-out codes past their expiry, codes still to delete, or pools to delete."""
    installed = select(Shop.id).where(Shop.uninstalled_at.is_(None), Shop.access_token.is_not(None))
    codes = select(PoolCode.shop_id).where(PoolCode.shop_id.in_(installed), or_(expired_codes(now), codes_to_delete()))
    pools = select(CodePool.shop_id).where(CodePool.shop_id.in_(installed), pools_ended(now, grace))
    return sorted(set(session.scalars(codes.distinct())) | set(session.scalars(pools.distinct())))


# --- the merchant's pool settings -------------------------------------------------------------------

POOL_SETTINGS = {"low_water": "pool_low_water", "size": "pool_size", "window_days": "pool_window_days"}
MAX_POOL_SIZE = 100_000
MAX_WINDOW_DAYS = 90


def set_pool_settings(session: Session, shop_id: int, program_id: int, changes: dict[str, Any]) -> Program:
    """Change a referral-friend program's pool settings (``low_water``, ``size``, ``window_days``), all or
    nothing; every problem is reported at once in a ``BadRequest`` naming the setting and the rule.

    A new size or mark applies at the next top-up; a new window to pools started afterwards.
    """
    program = get_program(session, shop_id, program_id, for_update=True)
    problems = []
    if program.kind != "referral_friend":
        problems.append(f"only the referral_friend program has a code pool, not {program.kind}")
    unknown = [name for name in changes if name not in POOL_SETTINGS]
    if unknown:
        problems.append(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                        f"(the pool settings are {', '.join(POOL_SETTINGS)})")
    new, found = pool_setting_problems(
        program, {POOL_SETTINGS[name]: raw for name, raw in changes.items() if name in POOL_SETTINGS})
    problems += [text for _, text in found]
    if problems:
        raise BadRequest("; ".join(problems))
    for column, value in new.items():
        setattr(program, column, value)
    session.flush()
    return program


POOL_SETTING_NAMES = {column: name for name, column in POOL_SETTINGS.items()}


def pool_setting_problems(program: Program, changes: dict[str, Any],
                          names: dict[str, str] = POOL_SETTING_NAMES
                          ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The pool columns (``pool_size``, ``pool_low_water``, ``pool_window_days``) as ``changes`` (column →
    JSON value) would leave them, and every problem with that, each naming the setting as ``names`` says
    (the short names of ``POOL_SETTINGS`` by default). The one set of pool rules, for ``set_pool_settings``
    and ``referral_settings``; the caller refuses unknown names.

    A value of the wrong type is named and left out; the rules judge the program as it would be with the
    values that did parse, so every problem comes in one answer. Each problem comes with the name of the
    setting it is about (as ``names`` says), so that a page can place it by its field.
    """
    new = {column: getattr(program, column) for column in POOL_SETTINGS.values()}
    problems = []
    for column, raw in changes.items():
        if not isinstance(raw, int) or isinstance(raw, bool):
            problems.append((names[column], f"{names[column]} must be a whole number, not {shown(raw)}"))
        else:
            new[column] = raw
    size, low, window = new["pool_size"], new["pool_low_water"], new["pool_window_days"]
    size_ok = 1 <= size <= MAX_POOL_SIZE
    if not size_ok:
        problems.append((names["pool_size"], f"{names['pool_size']} must be 1 to {MAX_POOL_SIZE:,} codes, not {size}"))
    if not 0 <= low < size and (size_ok or low < 0):
        problems.append((names["pool_low_water"], f"{names['pool_low_water']} must be 0 or more and less than "
                                                  f"the {names['pool_size'].replace('_', ' ')} ({size}), not {low}"))
    if not 1 <= window <= MAX_WINDOW_DAYS:
        problems.append((names["pool_window_days"], f"{names['pool_window_days']} must be 1 to {MAX_WINDOW_DAYS} "
                                                    f"days, not {window}"))
    return new, problems
