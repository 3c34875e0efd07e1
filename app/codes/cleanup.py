"""The store clean-up: codes that can no longer be used leave the merchant's store, in bulk.

Every code we issue is a discount in the merchant's admin, and Shopify caps the codes a store can
hold (see ``app.codes.metrics.STORE_CODE_CAP``). A code that can never be used again is deleted from
the store once ``STORE_CLEANUP_GRACE_DAYS`` (default 7) have passed:

- **expired and never redeemed**: status ``expired`` (a redeemed code is ``redeemed``), its end at
  least the grace period ago. A late ``orders/paid`` for it is still reconciled: orders keep the code.
- **revoked**: its revocation at least the grace period ago, and its deactivation confirmed (until
  then the revoke job may still be looking the discount up).

Redeemed codes stay: their discount is the store's own record of what the order used.

Our row and its history stay; ``removed_from_store_at`` says the discount is gone from the store.

How: ``discountCodeBulkDelete`` with up to ``BATCH`` discount ids (Shopify's limit for any input
array) answers at once with a ``Job``; we record its id on the rows (``store_removal_job``), poll
``job(id:)`` until ``done``, then mark the rows removed. 250 codes cost one mutation (10 points) and
a few polls (1 point each), where one ``discountCodeDelete`` per code would cost 2,500.

Safe to run twice or concurrently: a run works only on rows it has claimed (``claimed_by``, as the
issuing jobs do for theirs; the two never want the same rows), taken with one ``UPDATE`` over
``FOR UPDATE SKIP LOCKED`` candidates, so two runs take disjoint batches. A row whose job was
recorded is never sent again: the next run polls that job instead. A run killed between Shopify's
answer and our commit leaves its rows claimed without a job; once the claim lapses they are sent
again, and deleting what is gone already deletes nothing. A job Shopify no longer knows (``null``)
puts its rows back in line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select, update

from app.codes.issuance import MUTATION_POINTS, ShopRef
from app.db import Database, utcnow
from app.models import IssuedCode, Shop
from app.shopify.client import AdminAPIError, AdminClient, Throttled, UserErrors

log = logging.getLogger(__name__)

# Shopify: "Input arguments that accept an array have a maximum size of 250 for all APIs"
# (https://shopify.dev/docs/api/usage/limits); discountCodeBulkDelete documents no other limit.
BATCH = 250
CLAIM_SECONDS = 300  # outlasts a turn (20 s) and a deferral; a killed run's rows come back after this
POLL_DELAYS = (0.5, 1.0, 2.0, 3.0, 5.0)  # seconds between polls of a job, the last repeated


class JobNotDone(AdminAPIError):
    """The store's job is still running when the turn is over: come back in ``retry_after`` seconds."""

    transient = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def due(now: datetime, grace: timedelta) -> ColumnElement[bool]:
    """Codes on the store that can no longer be used and whose grace period is over."""
    cutoff = now - grace
    return and_(
        IssuedCode.discount_gid.is_not(None), IssuedCode.removed_from_store_at.is_(None),
        or_(and_(IssuedCode.status == "expired", IssuedCode.expires_at <= cutoff),
            and_(IssuedCode.status == "revoked", IssuedCode.revoked_at <= cutoff,
                 IssuedCode.deactivated_at.is_not(None))))


def in_progress() -> ColumnElement[bool]:
    """Codes whose bulk-delete job was sent and not yet confirmed done (whatever their status became since:
    a late redemption does not bring the discount back)."""
    return and_(IssuedCode.store_removal_job.is_not(None), IssuedCode.removed_from_store_at.is_(None))


def shops_due(now: datetime, grace: timedelta) -> Select[tuple[int]]:
    """Installed shops with codes to remove or removals to confirm."""
    work = exists().where(IssuedCode.shop_id == Shop.id, or_(due(now, grace), in_progress()))
    return (select(Shop.id).where(Shop.uninstalled_at.is_(None), Shop.access_token.is_not(None), work)
            .order_by(Shop.id))


@dataclass
class Outcome:
    removed: int = 0
    jobs: int = 0
    polls: int = 0
    refused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.removed} codes removed from the store by {self.jobs} bulk deletes ({self.polls} polls)"
        return text + (f"; refused: {'; '.join(self.refused)}" if self.refused else "")


class StoreCleaner:
    """Removes one shop's due codes from its store. Build one per job: it holds the shop's Admin client."""

    def __init__(self, db: Database, client: AdminClient, shop: ShopRef, claimant: str, grace: timedelta,
                 sleep: float = 1.0) -> None:
        self.db = db
        self.client = client
        self.shop = shop
        self.claimant = claimant
        self.grace = grace
        self.sleep_scale = sleep  # tests may speed up the polling pauses; the schedule is the same
        self.outcome = Outcome()

    # -- claims --

    def _free(self, now: datetime) -> ColumnElement[bool]:
        return or_(IssuedCode.claimed_by.is_(None), IssuedCode.claimed_by == self.claimant,
                   IssuedCode.claim_expires_at < now)

    def _claim(self, condition: ColumnElement[bool], limit: int) -> list[tuple[int, str, str | None]]:
        """Take up to ``limit`` rows matching ``condition`` for this run: (id, discount gid, removal job)."""
        now = utcnow()
        with self.db.session_scope() as session:
            # Two statements in one transaction: the rows stay locked from the SELECT to the commit. (An
            # UPDATE over a ``LIMIT ... FOR UPDATE SKIP LOCKED`` subquery may run the subquery more than
            # once on PostgreSQL and take more than ``limit`` rows.)
            ids = session.scalars(select(IssuedCode.id).where(IssuedCode.shop_id == self.shop.id, condition,
                                                              self._free(now))
                                  .order_by(IssuedCode.id).limit(limit).with_for_update(skip_locked=True)).all()
            if not ids:
                return []
            rows = session.execute(
                update(IssuedCode).where(IssuedCode.shop_id == self.shop.id, IssuedCode.id.in_(ids))
                .values(claimed_by=self.claimant, claim_expires_at=now + timedelta(seconds=CLAIM_SECONDS))
                .returning(IssuedCode.id, IssuedCode.discount_gid, IssuedCode.store_removal_job)).all()
        return sorted((row[0], row[1], row[2]) for row in rows)

    def release(self) -> None:
        """Give back every claim this run still holds (its rows are done, or will be taken up again)."""
        with self.db.session_scope() as session:
            session.execute(update(IssuedCode).where(IssuedCode.shop_id == self.shop.id,
                                                     IssuedCode.claimed_by == self.claimant)
                            .values(claimed_by=None, claim_expires_at=None))

    # -- the work --

    def run(self, deadline: float) -> Outcome:
        """Confirm the removals in progress, then remove due codes a batch at a time, until none is left.

        Raises ``JobNotDone`` when a store job outlasts ``deadline`` (a ``time.monotonic()`` value),
        and whatever the client raises (``Throttled`` and the rest); claims are kept for the next turn.
        """
        while pending := self._claim(in_progress(), BATCH):
            by_job: dict[str, list[int]] = {}
            for code_id, _, job_gid in pending:
                by_job.setdefault(job_gid, []).append(code_id)  # type: ignore[arg-type]
            for job_gid, ids in by_job.items():
                self._finish(job_gid, ids, deadline)
        while batch := self._claim(and_(due(utcnow(), self.grace), IssuedCode.store_removal_job.is_(None)), BATCH):
            ids = [code_id for code_id, _, _ in batch]
            job = self._submit(batch)
            if job is None:
                break
            if job.get("done"):
                self._done(job["id"], ids)
            else:
                self._finish(job["id"], ids, deadline)
        return self.outcome

    def _submit(self, batch: list[tuple[int, str, str | None]]) -> dict[str, Any] | None:
        """Send one ``discountCodeBulkDelete`` for the batch and record its job on the rows; the job
        (``id``, ``done``), or None when the store refused the batch."""
        ids = [code_id for code_id, _, _ in batch]
        if (wait := self.client.wait_for(MUTATION_POINTS)) > 0:
            raise Throttled(f"{self.shop.domain}'s bucket is short of a mutation", wait)
        try:
            payload = self.client.mutate("discountCodeBulkDelete", {"ids": [gid for _, gid, _ in batch]})
        except UserErrors as exc:
            # Nothing was started; the rows stay on the store and are tried again by the next run.
            log.warning("store refused a bulk delete", extra={"shop": self.shop.domain, "reason": str(exc)})
            self.outcome.refused.append(str(exc))
            return None
        job = payload.get("job") or {}
        if not job.get("id"):
            raise AdminAPIError(f"{self.shop.domain}: discountCodeBulkDelete answered without a job")
        with self.db.session_scope() as session:
            session.execute(update(IssuedCode).where(IssuedCode.shop_id == self.shop.id, IssuedCode.id.in_(ids),
                                                     IssuedCode.claimed_by == self.claimant,
                                                     IssuedCode.removed_from_store_at.is_(None))
                            .values(store_removal_job=job["id"]))
        self.outcome.jobs += 1
        log.info("bulk delete started", extra={"shop": self.shop.domain, "status": f"{len(ids)} codes"})
        return job

    def _finish(self, job_gid: str, ids: list[int], deadline: float) -> None:
        """Poll the job until it is done, then mark its rows removed (or put them back if it is unknown)."""
        for attempt in range(10_000):
            job = self.client.query("job", {"id": job_gid}).get("job")
            self.outcome.polls += 1
            if job is None:
                # The store no longer knows the job (or never did): the rows go back in line to be sent again.
                with self.db.session_scope() as session:
                    session.execute(update(IssuedCode).where(
                        IssuedCode.shop_id == self.shop.id, IssuedCode.id.in_(ids),
                        IssuedCode.store_removal_job == job_gid).values(store_removal_job=None))
                return
            if job.get("done"):
                self._done(job_gid, ids)
                return
            pause = POLL_DELAYS[min(attempt, len(POLL_DELAYS) - 1)] * self.sleep_scale
            if time.monotonic() + pause > deadline:
                raise JobNotDone(f"{self.shop.domain}: bulk delete {job_gid} still running", pause)
            time.sleep(pause)
        raise AssertionError("unreachable")

    def _done(self, job_gid: str, ids: list[int]) -> None:
        with self.db.session_scope() as session:
            marked = session.execute(update(IssuedCode).where(
                IssuedCode.shop_id == self.shop.id, IssuedCode.id.in_(ids), IssuedCode.store_removal_job == job_gid,
                IssuedCode.removed_from_store_at.is_(None))
                .values(removed_from_store_at=utcnow(), claimed_by=None, claim_expires_at=None)).rowcount
        self.outcome.removed += marked
