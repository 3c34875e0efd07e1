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
- ``PoolFiller.top_up`` (a job): plans the program's pools (``plan``) and fills them: creates the pool
  discount with its first code, draws codes in the program's format, reserves them here as
  ``pending``, sends each 250 with ``discountRedeemCodeBulkAdd`` (every send recorded first in
  ``pool_bulk_creations``), polls ``discountRedeemCodeBulkCreation`` until ``done`` and marks the
  codes ``available``. Only a creation that reports failures has its codes read (with their errors,
  1.2 points a code); the failed ones are marked ``failed`` and replaced by fresh ones.
- Rotation: a pool hands codes out for ``pool_window_days`` (default 7); its discount ends
  ``expires_after_days`` after that window, so a code handed out at its last moment lives its full
  expiry. The next pool is created a day ahead so the landing never goes without. Changing the
  program's offer, expiry or code format starts a new pool at once; the old one hands out until the
  new one has codes, and codes handed out keep the terms of their pool.
- ``PoolSweeper.run`` (a job): a handed-out code past its own expiry is deleted from the store
  (``discountCodeRedeemCodeBulkDelete``, 250 ids a job; the ids are read from the pool discount's
  codes only for such codes, 1 point a code, resuming where the last read stopped); a pool discount
  whose end passed ``STORE_CLEANUP_GRACE_DAYS`` ago is deleted whole (``discountCodeBulkDelete``).

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
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.codes.cleanup import BATCH, POLL_DELAYS, JobNotDone
from app.codes.generator import CodeFormat
from app.codes.issuance import DISCOUNT_TAG, MAX_CODE_TRIES, MUTATION_POINTS, ShopRef, discount_create, terms_of
from app.codes.programs import code_format, get_program
from app.db import Database, insert_ignoring_conflict, utcnow
from app.errors import BadRequest
from app.models import CodePool, PoolBulkCreation, PoolCode, Program, Shop
from app.shopify.client import AdminAPIError, AdminClient, Throttled, UserErrors

log = logging.getLogger(__name__)

ROTATE_AHEAD = timedelta(days=1)  # the next pool is created this long before the current one stops handing out
TAKEN_MESSAGE = "must be unique"  # Shopify's error on a bulk-added code that exists on the store (code: null)
SENDS_PER_ROUND = 8  # bulk adds sent before their creations are polled (80 points: well within any bucket)
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
                     on_low: Callable[[int, int], object] | None = None) -> PoolCode | None:
    """The visitor's friend code of this program: the one they had already, or a fresh one from the
    current pool; None when the pool is empty. Never calls the Admin API.

    A fresh code is taken with one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED)
    AND status = 'available'``: the subquery is uncorrelated, so PostgreSQL runs it once (an InitPlan),
    and concurrent takers skip each other's locked row instead of waiting for it, so no two visitors
    ever get the same code. SQLite (``make run``) has no row locks: one writer at a time runs the whole
    statement, and the status condition keeps it correct there too. A visitor racing themselves (two
    tabs) hits the unique (shop, program, visitor) index and gets the code the other request took.

    ``on_low(shop_id, program_id)`` is called when the pool is empty or this take left it below its
    low-water mark (``queue_top_up`` by default: a debounced enqueue of the top-up job).
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
        statement = take_statement(shop_id, pool_id, visitor_key, now, now + timedelta(days=days) if days else None)
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
                   expires_at: datetime | None) -> Any:
    """``UPDATE pool_codes SET status = 'handed_out', ... WHERE id = (SELECT id ... WHERE status = 'available'
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) AND status = 'available' RETURNING *``."""
    oldest = (select(PoolCode.id).where(PoolCode.pool_id == pool_id, PoolCode.status == "available")
              .order_by(PoolCode.id).limit(1).with_for_update(skip_locked=True).scalar_subquery())
    return (update(PoolCode).where(PoolCode.id == oldest, PoolCode.status == "available", PoolCode.shop_id == shop_id)
            .values(status="handed_out", visitor=visitor_key, handed_out_at=now, expires_at=expires_at)
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


# --- filling a pool on the store ------------------------------------------------------------------


def _insert_codes(session: Session, rows: list[dict[str, Any]]) -> Any:
    """One multi-row INSERT of fresh codes, skipping any that equals one of the shop's codes; returns ids."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(PoolCode).values(rows).on_conflict_do_nothing(index_elements=["shop_id", "code"])
    return statement.returning(PoolCode.id)


@dataclass
class TopUp:
    created: int = 0  # codes the store confirmed
    failed: int = 0
    sends: int = 0
    polls: int = 0
    points: int = 0
    refused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.created} codes added to the pool by {self.sends} bulk adds ({self.polls} polls, "
                f"{self.points} points), {self.failed} failed")
        return text + (f"; refused: {'; '.join(self.refused)}" if self.refused else "")


class PoolRefused(AdminAPIError):
    """The store refused a pool discount or a bulk add: a person must look (``last_error`` says why)."""


class PoolFiller:
    """Fills one shop's pools. Build one per job: it holds the shop's Admin client.

    Each database write is its own short transaction, committed before the next call to the store.
    """

    def __init__(self, db: Database, client: AdminClient, shop: ShopRef, sleep: float = 1.0) -> None:
        self.db = db
        self.client = client
        self.shop = shop
        self.sleep_scale = sleep
        self.outcome = TopUp()

    def top_up(self, program_id: int, deadline: float, now: datetime | None = None) -> TopUp:
        """Plan the program's pools, then create what is missing on the store; raises ``JobNotDone`` when
        a creation outlasts ``deadline`` and whatever the client raises (``Throttled`` and the rest)."""
        with self.db.session_scope() as session:
            program = get_program(session, self.shop.id, program_id)
            if program.kind != "referral_friend" or not program.active:
                return self.outcome
            fills = plan(session, program, now or utcnow())
        self._finish_open_creations(deadline)
        for fill in fills:
            self._fill(fill, deadline)
        with self.db.session_scope() as session:  # a new pool with codes now retires the old terms' pools
            plan(session, get_program(session, self.shop.id, program_id), now or utcnow())
        return self.outcome

    # -- bookkeeping --

    def _call(self, pool_id: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run one Admin API call for the pool and add what it cost to the pool's points."""
        self.client.last_cost = None
        try:
            return run()
        finally:
            spent = int((self.client.last_cost or {}).get("actualQueryCost") or 0)
            if spent:
                self.outcome.points += spent
                with self.db.session_scope() as session:
                    session.execute(update(CodePool).where(CodePool.shop_id == self.shop.id, CodePool.id == pool_id)
                                    .values(points_spent=CodePool.points_spent + spent))

    def _pool(self, pool_id: int) -> CodePool:
        with self.db.session_scope() as session:
            return session.scalars(select(CodePool).where(CodePool.shop_id == self.shop.id,
                                                          CodePool.id == pool_id)).one()

    def _room(self, points: int) -> None:
        if (wait := self.client.wait_for(points)) > 0:
            raise Throttled(f"{self.shop.domain}'s bucket is short of {points} points", wait)

    # -- the pool discount --

    def _ensure_discount(self, pool: CodePool) -> CodePool:
        """The pool with its discount on the store, created with the first code (looked up first when an
        earlier attempt may have landed; a first code that is someone else's is drawn again)."""
        for _ in range(MAX_CODE_TRIES * 2):
            if pool.discount_gid is not None:
                return pool
            if pool.create_attempts:
                node = self._call(pool.id, lambda p=pool: self.client.query(
                    "codeDiscountNodeByCode", {"code": p.first_code})).get("codeDiscountNodeByCode")
                if node:
                    tags = (node.get("codeDiscount") or {}).get("tags") or ()
                    pool = self._adopt(pool, node["id"]) if pool_tag(pool.id) in tags else self._redraw_first(pool)
                    continue
            self._room(MUTATION_POINTS)
            pool = self._set(pool, create_attempts=CodePool.create_attempts + 1)
            window = f"{pool.hands_out_from:%Y-%m-%d} to {pool.hands_out_until:%Y-%m-%d}"
            name, variables = discount_create(
                pool.terms, title=f"{pool.terms['name']}: friend codes {window}",
                code=pool.first_code, starts_at=pool.created_at, ends_at=pool.ends_at,
                tags=[DISCOUNT_TAG, pool_tag(pool.id)])
            try:
                payload = self._call(pool.id, lambda n=name, v=variables: self.client.mutate(n, v))
            except Throttled:
                self._set(pool, create_attempts=CodePool.create_attempts - 1)  # nothing ran on the store
                raise
            except UserErrors as exc:
                if "TAKEN" in exc.codes:
                    continue  # ours from an earlier attempt, or someone else's: the look-up decides
                self._set(pool, last_error=str(exc)[:2000])
                raise PoolRefused(f"the store refused the pool discount: {exc}") from exc
            pool = self._adopt(pool, payload["codeDiscountNode"]["id"])
        raise PoolRefused(f"gave up creating pool {pool.id}'s discount after {MAX_CODE_TRIES * 2} attempts")

    def _set(self, pool: CodePool, **values: Any) -> CodePool:
        with self.db.session_scope() as session:
            session.execute(update(CodePool).where(CodePool.shop_id == self.shop.id, CodePool.id == pool.id)
                            .values(**values))
        return self._pool(pool.id)

    def _adopt(self, pool: CodePool, gid: str) -> CodePool:
        with self.db.session_scope() as session:
            session.execute(update(CodePool).where(CodePool.shop_id == self.shop.id, CodePool.id == pool.id,
                                                   CodePool.discount_gid.is_(None))
                            .values(discount_gid=gid, last_error=None))
        return self._pool(pool.id)

    def _redraw_first(self, pool: CodePool) -> CodePool:
        fmt = pool_format(pool)
        for _ in range(MAX_CODE_TRIES):
            code = fmt.generate()
            try:
                with self.db.session_scope() as session:
                    session.execute(update(PoolCode).where(PoolCode.shop_id == self.shop.id,
                                                           PoolCode.pool_id == pool.id,
                                                           PoolCode.code == pool.first_code)
                                    .values(code=code))
                    session.execute(update(CodePool).where(CodePool.shop_id == self.shop.id, CodePool.id == pool.id)
                                    .values(first_code=code, create_attempts=0))
            except IntegrityError:
                continue
            return self._pool(pool.id)
        raise PoolRefused(f"could not draw a first code unused in this store for pool {pool.id}")

    # -- bulk creations --

    def _fill(self, fill: Fill, deadline: float) -> None:
        """Add ``fill.wanted`` codes to the pool: rounds of up to ``SENDS_PER_ROUND`` bulk adds sent, then
        polled; codes the store refused are replaced by the next round."""
        pool = self._ensure_discount(self._pool(fill.pool_id))
        wanted, sent, added = fill.wanted, list[int](), 0
        while wanted > 0:
            round_ = []
            for _ in range(SENDS_PER_ROUND):
                if wanted <= 0:
                    break
                creation_id = self._reserve(pool, min(BATCH, wanted))
                wanted -= self._requested(creation_id)
                self._send(pool, creation_id)
                round_.append(creation_id)
            for creation_id in round_:
                self._settle(pool, creation_id, deadline)
            sent += round_
            now_added = self._added_since(pool.id, sent)
            if now_added == added:
                break  # the store took none of a whole round: stop rather than spin (the next run tries again)
            added = now_added
            wanted = fill.wanted - added

    def _requested(self, creation_id: int) -> int:
        with self.db.session_scope() as session:
            return session.scalar(select(PoolBulkCreation.requested).where(PoolBulkCreation.id == creation_id)) or 0

    def _added_since(self, pool_id: int, creations: list[int]) -> int:
        """Codes of these creations that the store took (or that are still on their way)."""
        with self.db.session_scope() as session:
            return session.scalar(select(func.count()).select_from(PoolCode).where(
                PoolCode.shop_id == self.shop.id, PoolCode.pool_id == pool_id,
                PoolCode.bulk_creation_id.in_(creations), PoolCode.status.in_(("available", "pending")))) or 0

    def _reserve(self, pool: CodePool, count: int) -> int:
        """A creation row and ``count`` fresh codes reserved for it (``pending``); the creation's id."""
        fmt = pool_format(pool)
        with self.db.session_scope() as session:
            creation = PoolBulkCreation(shop_id=self.shop.id, pool_id=pool.id, requested=0, done=False, attempts=0)
            session.add(creation)
            session.flush()
            reserved = 0
            for _ in range(MAX_CODE_TRIES):  # a drawn code equal to one of the shop's is drawn again
                if reserved == count:
                    break
                rows = [{"shop_id": self.shop.id, "program_id": pool.program_id, "pool_id": pool.id,
                         "bulk_creation_id": creation.id, "code": fmt.generate(), "status": "pending"}
                        for _ in range(count - reserved)]
                reserved += len(session.execute(_insert_codes(session, rows)).all())
            creation.requested = reserved
            return creation.id

    def _send(self, pool: CodePool, creation_id: int) -> None:
        """Send the creation's codes (counting the attempt first) and record the creation's id."""
        with self.db.session_scope() as session:
            codes = list(session.scalars(select(PoolCode.code).where(
                PoolCode.shop_id == self.shop.id, PoolCode.bulk_creation_id == creation_id,
                PoolCode.status == "pending").order_by(PoolCode.id)))
        if not codes:
            self._record(creation_id, done=True, imported=0, failed=0, finished_at=utcnow())
            return
        self._room(MUTATION_POINTS)
        self._record(creation_id, attempts=PoolBulkCreation.attempts + 1)
        try:
            payload = self._call(pool.id, lambda: self.client.mutate(
                "discountRedeemCodeBulkAdd",
                {"discountId": pool.discount_gid, "codes": [{"code": code} for code in codes]}))
        except Throttled:
            self._record(creation_id, attempts=PoolBulkCreation.attempts - 1)
            raise
        except UserErrors as exc:
            self._refused(pool, creation_id, str(exc))
            if any(list(e.get("field") or []) == ["discountId"] for e in exc.errors):
                self._discount_gone(pool)
            raise PoolRefused(f"the store refused a bulk add: {exc}") from exc
        creation = payload.get("bulkCreation") or {}
        if not creation.get("id"):
            raise AdminAPIError(f"{self.shop.domain}: discountRedeemCodeBulkAdd answered without a bulk creation")
        self._record(creation_id, gid=creation["id"])
        self.outcome.sends += 1

    def _refused(self, pool: CodePool, creation_id: int, reason: str) -> None:
        with self.db.session_scope() as session:
            failed = session.execute(update(PoolCode).where(
                PoolCode.shop_id == self.shop.id, PoolCode.bulk_creation_id == creation_id,
                PoolCode.status == "pending").values(status="failed", error=reason[:2000])).rowcount
            session.execute(update(PoolBulkCreation).where(PoolBulkCreation.id == creation_id).values(
                done=True, imported=0, failed=failed, finished_at=utcnow()))
            session.execute(update(CodePool).where(CodePool.id == pool.id).values(last_error=reason[:2000]))
        self.outcome.failed += failed
        self.outcome.refused.append(reason)

    def _discount_gone(self, pool: CodePool) -> None:
        """The pool's discount was deleted on the store (by the merchant, say): its codes no longer work, so
        the pool stops handing out at once and is marked removed; the next plan starts a new one."""
        now = utcnow()
        with self.db.session_scope() as session:
            session.execute(update(CodePool).where(CodePool.shop_id == self.shop.id, CodePool.id == pool.id)
                            .values(status="removed", removed_from_store_at=now))
            session.execute(update(PoolCode).where(PoolCode.shop_id == self.shop.id, PoolCode.pool_id == pool.id,
                                                   PoolCode.status != "removed")
                            .values(status="removed", removed_at=now))
        log.warning("pool discount gone from the store; a new pool replaces it",
                    extra={"shop": self.shop.domain, "status": f"pool {pool.id}"})

    def _record(self, creation_id: int, **values: Any) -> None:
        with self.db.session_scope() as session:
            session.execute(update(PoolBulkCreation).where(PoolBulkCreation.shop_id == self.shop.id,
                                                           PoolBulkCreation.id == creation_id).values(**values))

    def _finish_open_creations(self, deadline: float) -> None:
        """Creations an earlier run left behind: polled when sent, sent again when the answer was lost."""
        with self.db.session_scope() as session:
            open_ = session.execute(select(PoolBulkCreation.id, PoolBulkCreation.pool_id, PoolBulkCreation.gid)
                                    .where(PoolBulkCreation.shop_id == self.shop.id,
                                           PoolBulkCreation.done.is_(False))
                                    .order_by(PoolBulkCreation.id)).all()
        for creation_id, pool_id, gid in open_:
            pool = self._pool(pool_id)
            if pool.status == "removed" or pool.discount_gid is None:
                continue
            if gid is None:
                self._send(pool, creation_id)
            self._settle(pool, creation_id, deadline)

    def _settle(self, pool: CodePool, creation_id: int, deadline: float) -> None:
        """Poll the creation until done, then mark its codes available or failed."""
        with self.db.session_scope() as session:
            creation = session.get_one(PoolBulkCreation, creation_id)
        if creation.done or creation.gid is None:
            return
        for attempt in range(10_000):
            answer = self._call(pool.id, lambda g=creation.gid: self.client.query(
                "discountRedeemCodeBulkCreation", {"id": g})).get("discountRedeemCodeBulkCreation")
            self.outcome.polls += 1
            if answer is None:  # the store does not know it (never landed): send the codes again
                self._record(creation_id, gid=None)
                self._send(pool, creation_id)
                with self.db.session_scope() as session:
                    creation = session.get_one(PoolBulkCreation, creation_id)
                continue
            if answer.get("done"):
                self._done(pool, creation, answer)
                return
            pause = POLL_DELAYS[min(attempt, len(POLL_DELAYS) - 1)] * self.sleep_scale
            if time.monotonic() + pause > deadline:
                raise JobNotDone(f"{self.shop.domain}: bulk creation {creation.gid} still running", pause)
            time.sleep(pause)

    def _done(self, pool: CodePool, creation: PoolBulkCreation, answer: dict[str, Any]) -> None:
        """A finished creation: without failures its codes are all available (one UPDATE, no codes read);
        with failures each code's outcome is read and recorded."""
        failed_count = int(answer.get("failedCount") or 0)
        if not failed_count:
            with self.db.session_scope() as session:
                imported = session.execute(update(PoolCode).where(
                    PoolCode.shop_id == self.shop.id, PoolCode.bulk_creation_id == creation.id,
                    PoolCode.status == "pending").values(status="available")).rowcount
                session.execute(update(PoolBulkCreation).where(PoolBulkCreation.id == creation.id).values(
                    done=True, imported=int(answer.get("importedCount") or imported), failed=0, finished_at=utcnow()))
            self.outcome.created += imported
            return
        outcomes = self._read_codes(pool, creation.gid)  # type: ignore[arg-type]
        with self.db.session_scope() as session:
            rows = list(session.scalars(select(PoolCode).where(
                PoolCode.shop_id == self.shop.id, PoolCode.bulk_creation_id == creation.id,
                PoolCode.status == "pending")))
        lost_answer = creation.attempts > 1
        imported = failed = 0
        changes: list[tuple[int, dict[str, Any]]] = []
        for row in rows:
            redeem_gid, errors = outcomes.get(row.code.upper(), (None, []))
            if row.code.upper() not in outcomes:
                errors = [{"message": "not in the store's bulk creation"}]
            if errors and lost_answer and all(TAKEN_MESSAGE in (e.get("message") or "") for e in errors) \
                    and self._on_this_pool(pool, row.code):
                errors = []  # an earlier send of these very codes landed
            values: dict[str, Any]
            if errors:
                values = {"status": "failed", "error": "; ".join(str(e.get("message")) for e in errors)[:2000]}
                failed += 1
            else:
                values = {"status": "available", "redeem_code_gid": redeem_gid}
                imported += 1
            changes.append((row.id, values))
        with self.db.session_scope() as session:
            for code_id, values in changes:
                session.execute(update(PoolCode).where(PoolCode.id == code_id, PoolCode.status == "pending")
                                .values(**values))
        self._record(creation.id, done=True, imported=int(answer.get("importedCount") or imported),
                     failed=failed_count, finished_at=utcnow())
        self.outcome.created += imported
        self.outcome.failed += failed
        if failed:
            log.info("pool codes refused by the store; fresh ones replace them",
                     extra={"shop": self.shop.domain, "status": f"{failed} of {len(rows)}"})

    def _read_codes(self, pool: CodePool, gid: str) -> dict[str, tuple[str | None, list[dict[str, Any]]]]:
        """Each code of a finished creation: (its redeem code id, its errors)."""
        found: dict[str, tuple[str | None, list[dict[str, Any]]]] = {}
        after = None
        while True:
            self._room(303)
            data = self._call(pool.id, lambda a=after: self.client.query(
                "discountRedeemCodeBulkCreationCodes", {"id": gid, "first": BATCH, "after": a}),
            ).get("discountRedeemCodeBulkCreation")
            if not data:
                return found
            page = data["codes"]
            for node in page["nodes"]:
                redeem = node.get("discountRedeemCode") or {}
                found[node["code"].upper()] = (redeem.get("id"), node.get("errors") or [])
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    def _on_this_pool(self, pool: CodePool, code: str) -> bool:
        node = self._call(pool.id, lambda: self.client.query(
            "codeDiscountNodeByCode", {"code": code})).get("codeDiscountNodeByCode")
        return bool(node) and node["id"] == pool.discount_gid


# --- expiry: codes past their own end, pools past theirs ---------------------------------------------


@dataclass
class Sweep:
    expired: int = 0
    removed: int = 0
    pools_removed: int = 0
    jobs: int = 0
    polls: int = 0
    points: int = 0

    def summary(self) -> str:
        return (f"{self.expired} friend codes expired, {self.removed} deleted from the store, "
                f"{self.pools_removed} pool discounts deleted ({self.jobs} jobs, {self.polls} polls, "
                f"{self.points} points)")


def expired_codes(now: datetime) -> Any:
    return and_(PoolCode.status == "handed_out", PoolCode.expires_at.is_not(None), PoolCode.expires_at <= now)


def pools_ended(now: datetime, grace: timedelta) -> Any:
    """Pools whose discount ended at least ``grace`` ago (a pool without expiry stays, like a code without)."""
    return and_(CodePool.status != "removed", CodePool.ends_at.is_not(None), CodePool.ends_at <= now - grace)


def codes_to_delete() -> Any:
    return and_(PoolCode.status == "expired", PoolCode.removed_at.is_(None))


class PoolSweeper:
    """Deletes one shop's expired friend codes and ended pool discounts from its store."""

    def __init__(self, db: Database, client: AdminClient, shop: ShopRef, grace: timedelta, sleep: float = 1.0) -> None:
        self.db = db
        self.client = client
        self.shop = shop
        self.grace = grace
        self.sleep_scale = sleep
        self.outcome = Sweep()

    def run(self, deadline: float, now: datetime | None = None) -> Sweep:
        now = now or utcnow()
        with self.db.session_scope() as session:
            self.outcome.expired = session.execute(
                update(PoolCode).where(PoolCode.shop_id == self.shop.id, expired_codes(now))
                .values(status="expired")).rowcount
        self._remove_pools(now, deadline)
        with self.db.session_scope() as session:
            pools = list(session.scalars(select(CodePool).where(
                CodePool.shop_id == self.shop.id, CodePool.status != "removed", CodePool.discount_gid.is_not(None),
                select(PoolCode.id).where(PoolCode.pool_id == CodePool.id, codes_to_delete()).exists())
                .order_by(CodePool.id)))
        for pool in pools:
            self._delete_codes(pool, deadline)
        return self.outcome

    def _call(self, run: Callable[[], dict[str, Any]], pool_id: int | None = None) -> dict[str, Any]:
        self.client.last_cost = None
        try:
            return run()
        finally:
            spent = int((self.client.last_cost or {}).get("actualQueryCost") or 0)
            self.outcome.points += spent
            if spent and pool_id is not None:
                with self.db.session_scope() as session:
                    session.execute(update(CodePool).where(CodePool.shop_id == self.shop.id, CodePool.id == pool_id)
                                    .values(points_spent=CodePool.points_spent + spent))

    def _wait_job(self, job_gid: str, deadline: float) -> bool:
        """Poll a store job until done (True) or unknown to the store (False)."""
        for attempt in range(10_000):
            job = self._call(lambda: self.client.query("job", {"id": job_gid})).get("job")
            self.outcome.polls += 1
            if job is None:
                return False
            if job.get("done"):
                return True
            pause = POLL_DELAYS[min(attempt, len(POLL_DELAYS) - 1)] * self.sleep_scale
            if time.monotonic() + pause > deadline:
                raise JobNotDone(f"{self.shop.domain}: store job {job_gid} still running", pause)
            time.sleep(pause)
        raise AssertionError("unreachable")

    # -- single codes --

    def _delete_codes(self, pool: CodePool, deadline: float) -> None:
        """Delete the pool's expired codes from its discount, 250 ids a job; a job recorded on the rows
        is polled, never sent again."""
        with self.db.session_scope() as session:
            running = set(session.scalars(select(PoolCode.store_removal_job).where(
                PoolCode.pool_id == pool.id, codes_to_delete(), PoolCode.store_removal_job.is_not(None))))
        for job_gid in running:
            self._finish_codes(pool, job_gid, deadline)
        self._learn_ids(pool)
        while True:
            with self.db.session_scope() as session:
                batch = session.execute(select(PoolCode.id, PoolCode.redeem_code_gid).where(
                    PoolCode.pool_id == pool.id, PoolCode.shop_id == self.shop.id, codes_to_delete(),
                    PoolCode.store_removal_job.is_(None), PoolCode.redeem_code_gid.is_not(None))
                    .order_by(PoolCode.id).limit(BATCH)).all()
            if not batch:
                return
            if (wait := self.client.wait_for(MUTATION_POINTS)) > 0:
                raise Throttled(f"{self.shop.domain}'s bucket is short of a mutation", wait)
            try:
                payload = self._call(lambda b=batch: self.client.mutate("discountCodeRedeemCodeBulkDelete", {
                    "discountId": pool.discount_gid, "ids": [gid for _, gid in b]}), pool.id)
            except UserErrors as exc:
                if any(list(e.get("field") or []) == ["discountId"] for e in exc.errors):
                    self._pools_removed([pool.id])  # deleted on the store already: its codes went with it
                else:  # left as they are for the next run; the pool shows why
                    log.warning("store refused to delete expired friend codes",
                                extra={"shop": self.shop.domain, "reason": str(exc)})
                    with self.db.session_scope() as session:
                        session.execute(update(CodePool).where(CodePool.id == pool.id)
                                        .values(last_error=str(exc)[:2000]))
                return
            job = payload.get("job") or {}
            if not job.get("id"):
                raise AdminAPIError(f"{self.shop.domain}: discountCodeRedeemCodeBulkDelete answered without a job")
            with self.db.session_scope() as session:
                session.execute(update(PoolCode).where(PoolCode.id.in_([i for i, _ in batch]))
                                .values(store_removal_job=job["id"]))
            self.outcome.jobs += 1
            self._finish_codes(pool, job["id"], deadline)

    def _finish_codes(self, pool: CodePool, job_gid: str, deadline: float) -> None:
        done = self._wait_job(job_gid, deadline)
        with self.db.session_scope() as session:
            where = (PoolCode.pool_id == pool.id, PoolCode.store_removal_job == job_gid, codes_to_delete())
            if done:
                self.outcome.removed += session.execute(update(PoolCode).where(*where).values(
                    status="removed", removed_at=utcnow())).rowcount
            else:
                session.execute(update(PoolCode).where(*where).values(store_removal_job=None))

    def _learn_ids(self, pool: CodePool) -> None:
        """Read the redeem code ids the pool's expired codes need, from their bulk creations: a creation
        lists its codes in the order they were sent (our id order), so each read goes no further than
        the newest code wanted and resumes where the last one stopped (1.2 points a code read)."""
        with self.db.session_scope() as session:
            wanted = session.execute(
                select(PoolCode.bulk_creation_id, func.max(PoolCode.id)).where(
                    PoolCode.pool_id == pool.id, PoolCode.shop_id == self.shop.id, codes_to_delete(),
                    PoolCode.redeem_code_gid.is_(None), PoolCode.bulk_creation_id.is_not(None))
                .group_by(PoolCode.bulk_creation_id)).all()
        for creation_id, newest in wanted:
            with self.db.session_scope() as session:
                creation = session.get_one(PoolBulkCreation, creation_id)
                position = session.scalar(select(func.count()).select_from(PoolCode).where(
                    PoolCode.bulk_creation_id == creation_id, PoolCode.id <= newest)) or 0
            unread = position - creation.codes_read
            if creation.gid is None or unread <= 0:
                continue
            first = min(BATCH, unread)
            if (wait := self.client.wait_for(math.ceil(first * 1.2) + 3)) > 0:
                raise Throttled(f"{self.shop.domain}'s bucket is short of a page of codes", wait)
            data = self._call(lambda c=creation, f=first: self.client.query(
                "discountRedeemCodeBulkCreationCodes", {"id": c.gid, "first": f, "after": c.codes_cursor}),
                pool.id).get("discountRedeemCodeBulkCreation")
            page = (data or {}).get("codes") or {"nodes": [], "pageInfo": {}}
            ids = {node["code"].upper(): (node.get("discountRedeemCode") or {}).get("id") for node in page["nodes"]}
            with self.db.session_scope() as session:
                for row in session.scalars(select(PoolCode).where(PoolCode.bulk_creation_id == creation_id,
                                                                  PoolCode.code.in_(list(ids)))):
                    if ids[row.code]:
                        row.redeem_code_gid = ids[row.code]
                    elif row.status == "expired":  # the store no longer has it: nothing to delete
                        row.status, row.removed_at = "removed", utcnow()
                session.execute(update(PoolBulkCreation).where(PoolBulkCreation.id == creation_id).values(
                    codes_read=PoolBulkCreation.codes_read + len(page["nodes"]),
                    codes_cursor=page["pageInfo"].get("endCursor") or creation.codes_cursor))

    # -- whole pools --

    def _remove_pools(self, now: datetime, deadline: float) -> None:
        with self.db.session_scope() as session:
            pools = session.execute(select(CodePool.id, CodePool.discount_gid, CodePool.store_removal_job).where(
                CodePool.shop_id == self.shop.id, pools_ended(now, self.grace)).order_by(CodePool.id)).all()
        without = [pid for pid, gid, _ in pools if gid is None]
        if without:
            self._pools_removed(without)
        running: dict[str, list[int]] = {}
        for pid, gid, job in pools:
            if gid is not None and job is not None:
                running.setdefault(job, []).append(pid)
        for job_gid, ids in running.items():
            self._finish_pools(job_gid, ids, deadline)
        todo = [(pid, gid) for pid, gid, job in pools if gid is not None and job is None]
        for start in range(0, len(todo), BATCH):
            batch = todo[start:start + BATCH]
            if (wait := self.client.wait_for(MUTATION_POINTS)) > 0:
                raise Throttled(f"{self.shop.domain}'s bucket is short of a mutation", wait)
            payload = self._call(lambda b=batch: self.client.mutate(
                "discountCodeBulkDelete", {"ids": [gid for _, gid in b]}))
            job = payload.get("job") or {}
            if not job.get("id"):
                raise AdminAPIError(f"{self.shop.domain}: discountCodeBulkDelete answered without a job")
            ids = [pid for pid, _ in batch]
            with self.db.session_scope() as session:
                session.execute(update(CodePool).where(CodePool.id.in_(ids)).values(store_removal_job=job["id"]))
            self.outcome.jobs += 1
            self._finish_pools(job["id"], ids, deadline)

    def _finish_pools(self, job_gid: str, ids: list[int], deadline: float) -> None:
        if self._wait_job(job_gid, deadline):
            self._pools_removed(ids)
        else:
            with self.db.session_scope() as session:
                session.execute(update(CodePool).where(CodePool.id.in_(ids), CodePool.store_removal_job == job_gid)
                                .values(store_removal_job=None))

    def _pools_removed(self, ids: list[int]) -> None:
        now = utcnow()
        with self.db.session_scope() as session:
            self.outcome.pools_removed += session.execute(update(CodePool).where(
                CodePool.shop_id == self.shop.id, CodePool.id.in_(ids), CodePool.status != "removed")
                .values(status="removed", removed_from_store_at=now)).rowcount
            session.execute(update(PoolCode).where(PoolCode.shop_id == self.shop.id, PoolCode.pool_id.in_(ids),
                                                   PoolCode.status != "removed")
                            .values(status="removed", removed_at=now))


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
    new = {name: getattr(program, column) for name, column in POOL_SETTINGS.items()}
    for name, raw in changes.items():
        if name not in POOL_SETTINGS:
            continue
        if not isinstance(raw, int) or isinstance(raw, bool):
            problems.append(f"{name} must be a whole number, not {raw!r}")
        else:
            new[name] = raw
    if not problems:
        if not 1 <= new["size"] <= MAX_POOL_SIZE:
            problems.append(f"size must be 1 to {MAX_POOL_SIZE:,} codes, not {new['size']}")
        if not 0 <= new["low_water"] < new["size"]:
            problems.append(f"low_water must be 0 or more and less than the size ({new['size']}), "
                            f"not {new['low_water']}")
        if not 1 <= new["window_days"] <= MAX_WINDOW_DAYS:
            problems.append(f"window_days must be 1 to {MAX_WINDOW_DAYS} days, not {new['window_days']}")
    if problems:
        raise BadRequest("; ".join(problems))
    for name, column in POOL_SETTINGS.items():
        setattr(program, column, new[name])
    session.flush()
    return program
