"""Friend code pools on the store: the top-up job's filler and the expiry job's sweeper.

See ``app.codes.pools`` for the whole design; this module is the part that calls the Admin API.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.codes.cleanup import BATCH, POLL_DELAYS, JobNotDone
from app.codes.issuance import DISCOUNT_TAG, MAX_CODE_TRIES, MUTATION_POINTS, ShopRef, discount_create
from app.codes.pools import (
    Fill,
    codes_to_delete,
    expired_codes,
    plan,
    pool_format,
    pool_tag,
    pools_ended,
)
from app.codes.programs import get_program
from app.db import Database, utcnow
from app.models import CodePool, PoolBulkCreation, PoolCode
from app.shopify.client import AdminAPIError, AdminClient, Throttled, UserErrors

log = logging.getLogger(__name__)

TAKEN_MESSAGE = "must be unique"  # Shopify's error on a bulk-added code that exists on the store (code: null)
SENDS_PER_ROUND = 8  # bulk adds sent before their creations are polled (80 points: well within any bucket)


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


