"""Catch-up reconciliation: read a shop's recently updated orders through the Admin API and reconcile
each paid one, so that an ``orders/paid`` webhook that never arrived still counts; a paid order the
store says is cancelled has its cancellation recorded too (``order_changes``), so an ``orders/cancelled``
that never arrived still voids the order's held referral. (Refunds are not read: the Admin API's
``Order.refunds`` is not in the schema we hold; a lost ``refunds/create`` is not recovered.)

Shopify does not guarantee webhook delivery and recommends exactly this: periodically fetch the
orders updated since the last sync. A shop's ``ReconcileCursor`` says how far we have read. A *walk*
reads the orders updated since ``updated_since`` (less ``OVERLAP``, for orders Shopify's search index
has not caught up with), oldest update first, one page at a time. Each page's orders and the page
cursor after it are committed in one transaction, so a crash mid-page redoes that page only, and
redoing it changes nothing (``reconciliation.reconcile`` is idempotent). When the last page is in,
``updated_since`` moves to the newest update the walk saw.

No lock is held across a call to the store. Two runs for one shop cannot both advance the cursor:
the page is applied only if the cursor still says what it said when the page was asked for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.codes import order_changes, reconciliation
from app.codes.metrics import zone_or_none
from app.db import Database, insert_ignoring_conflict, utcnow
from app.errors import BadRequest
from app.models import ReconcileCursor, Shop
from app.shopify.client import AdminClient

log = logging.getLogger(__name__)

PAGE_SIZE = 50
OVERLAP = timedelta(minutes=5)
DEFAULT_INTERVAL_MINUTES = 15
MAX_INTERVAL_MINUTES = 1440
RECENT_RUNS = 10  # whole walks kept on the cursor for `reconcile status` and the API


@dataclass
class Page:
    """What one page did: orders read, paid ones reconciled, of those first recorded by catch-up."""

    orders: int
    reconciled: int
    recovered: int
    redeemed: int
    finished: bool
    rewards: int = 0  # advocates' reward codes reserved (no hold): to be issued
    cancellations: int = 0  # cancellations first recorded by catch-up (their webhook had not come)


def cursor_for(session: Session, shop: Shop) -> ReconcileCursor:
    """The shop's cursor, created on first use to start at the install (no code of ours is older)."""
    insert_ignoring_conflict(session, ReconcileCursor, ["shop_id"], shop_id=shop.id, updated_since=shop.installed_at,
                             interval_minutes=DEFAULT_INTERVAL_MINUTES, walk_pages=0, walk_orders=0,
                             walk_recovered=0, last_orders=0, last_recovered=0)
    return session.scalars(select(ReconcileCursor).where(ReconcileCursor.shop_id == shop.id)).one()


def set_interval(session: Session, shop: Shop, minutes: int) -> ReconcileCursor:
    """How often catch-up runs for the shop (1 to 1440 minutes); the next run moves accordingly."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_INTERVAL_MINUTES:
        raise BadRequest(f"the catch-up interval must be a whole number of minutes from 1 to "
                         f"{MAX_INTERVAL_MINUTES}, not {minutes!r}")
    cursor = cursor_for(session, shop)
    cursor.interval_minutes = minutes
    cursor.next_run_at = min(cursor.next_run_at or utcnow(), utcnow() + timedelta(minutes=minutes))
    return cursor


def due_shops(session: Session, now: datetime, limit: int = 1000) -> list[int]:
    """Installed, set-up shops whose catch-up is due (never run, or past ``next_run_at``), most overdue first.

    A maintenance query across shops by design: it only picks which shops' own jobs to queue.
    """
    due = (select(Shop.id).outerjoin(ReconcileCursor, ReconcileCursor.shop_id == Shop.id)
           .where(Shop.uninstalled_at.is_(None), Shop.access_token.is_not(None), Shop.setup_completed_at.is_not(None),
                  (ReconcileCursor.next_run_at.is_(None)) | (ReconcileCursor.next_run_at <= now))
           .order_by(ReconcileCursor.next_run_at.asc().nulls_first(), Shop.id).limit(limit))
    return list(session.scalars(due))


def mark_scheduled(session: Session, shop: Shop, now: datetime) -> None:
    cursor = cursor_for(session, shop)
    cursor.next_run_at = now + timedelta(minutes=cursor.interval_minutes)


def search_query(since: datetime) -> str:
    """Shopify search syntax for "updated at or after ``since``" (whole seconds, UTC)."""
    return f"updated_at:>='{since.replace(microsecond=0).strftime('%Y-%m-%dT%H:%M:%SZ')}'"


def status_json(cursor: ReconcileCursor | None, job_state: str | None = None) -> dict[str, Any]:
    """The cursor as the API and the CLI show it: how far catch-up has read, what it is doing now."""
    if cursor is None:
        return {"interval_minutes": DEFAULT_INTERVAL_MINUTES, "read_up_to": None, "next_run_at": None,
                "walk": None, "last_completed_at": None, "last_orders": 0, "last_recovered": 0,
                "last_error": None, "job": job_state, "recent_runs": []}
    walk = None
    if cursor.walk_since is not None:
        walk = {"since": at(cursor.walk_since), "started_at": at(cursor.walk_started_at),
                "pages": cursor.walk_pages, "orders": cursor.walk_orders, "recovered": cursor.walk_recovered}
    return {"interval_minutes": cursor.interval_minutes, "read_up_to": at(cursor.updated_since),
            "next_run_at": at(cursor.next_run_at), "walk": walk, "last_completed_at": at(cursor.last_completed_at),
            "last_orders": cursor.last_orders, "last_recovered": cursor.last_recovered,
            "last_error": cursor.last_error, "job": job_state, "recent_runs": list(cursor.recent_runs or [])}


def at(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class CatchUp:
    """One shop's catch-up, a page at a time (see the module docstring)."""

    def __init__(self, db: Database, client: AdminClient, shop_id: int, page_size: int = PAGE_SIZE,
                 email_key: str | None = None) -> None:
        self.db = db
        self.email_key = email_key  # fingerprints buyers' emails for the self-referral check
        self.client = client
        self.shop_id = shop_id
        self.page_size = page_size

    def _walk(self) -> tuple[datetime, str | None]:
        """Where the walk in progress stands; a new walk is started when none is."""
        with self.db.session_scope() as session:
            shop = session.get_one(Shop, self.shop_id)
            cursor = session.scalars(select(ReconcileCursor).where(ReconcileCursor.shop_id == shop.id)
                                     .with_for_update()).one_or_none() or cursor_for(session, shop)
            if cursor.walk_since is None:
                cursor.walk_since = cursor.updated_since - OVERLAP
                cursor.walk_after, cursor.walk_newest, cursor.walk_started_at = None, None, utcnow()
                cursor.walk_pages = cursor.walk_orders = cursor.walk_recovered = 0
            return cursor.walk_since, cursor.walk_after

    def page(self) -> Page:
        """Read and reconcile the walk's next page; ``finished`` when it was the last."""
        since, after = self._walk()
        data = self.client.query("orders", {"first": self.page_size, "after": after, "query": search_query(since)})
        answer = data["orders"]
        nodes, info = answer.get("nodes") or [], answer.get("pageInfo") or {}
        with self.db.session_scope() as session:
            _remember_time_zone(session, self.shop_id, (data.get("shop") or {}).get("ianaTimezone"))
            cursor = session.scalars(select(ReconcileCursor).where(ReconcileCursor.shop_id == self.shop_id)
                                     .with_for_update()).one()
            if cursor.walk_since != since or cursor.walk_after != after:
                return Page(0, 0, 0, 0, finished=cursor.walk_since is None)  # another run took this page
            page = self._apply(session, nodes)
            newest = max((reconciliation.moment(node["updatedAt"], "updatedAt") for node in nodes
                          if node.get("updatedAt")), default=None)
            if newest is not None and (cursor.walk_newest is None or newest > cursor.walk_newest):
                cursor.walk_newest = newest
            cursor.walk_pages += 1
            cursor.walk_orders += page.orders
            cursor.walk_recovered += page.recovered
            if info.get("hasNextPage") and info.get("endCursor"):
                cursor.walk_after = info["endCursor"]
            else:
                self._finish(cursor)
                page.finished = True
        return page

    def _apply(self, session: Session, nodes: list[dict[str, Any]]) -> Page:
        page = Page(orders=len(nodes), reconciled=0, recovered=0, redeemed=0, finished=False)
        paid = []
        for node in nodes:
            try:
                order = reconciliation.PaidOrderFacts.from_graphql(node, self.email_key)
            except reconciliation.InvalidOrder as exc:
                # One order we cannot read must not hold up every order after it, run after run.
                log.warning("catch-up skipped an order it cannot read", extra={
                    "shop_id": self.shop_id, "reason": f"{node.get('id')}: {exc}"})
                continue
            if order.paid:  # else paid later: it is updated then, and a later walk reads it again
                paid.append((node, order))
        # The page is one transaction, so every order's lock is taken first, in order, before any row
        # lock reconciling takes (an advocate's): taken order by order, a page that had locked an
        # advocate for one order then waited for the next order's lock, held by that order's webhook
        # job, which waited for the advocate: a deadlock.
        for order_id in sorted({order.order_id for _, order in paid}):
            order_changes.lock_order(session, self.shop_id, order_id)
        for node, order in paid:
            outcome = reconciliation.reconcile(session, self.shop_id, order, "catch_up")
            page.reconciled += 1
            page.recovered += outcome.new_order
            page.redeemed += len(outcome.redeemed)
            page.rewards += outcome.reward_reserved
            if outcome.redeemed:
                log.info("catch-up found a redemption", extra={"shop_id": self.shop_id,
                                                               "reason": outcome.summary()})
            if node.get("cancelledAt"):
                page.cancellations += self._cancelled(session, order.order_id, node["cancelledAt"])
        return page

    def _cancelled(self, session: Session, order_id: int, cancelled_at: str) -> bool:
        """Record the order's cancellation (once: ``orders/cancelled`` may have done it, and brings the
        reason, which the Admin API's ``Order`` does not); True when it was new."""
        try:
            changes = order_changes.OrderChanges(order_id=order_id, cancel_reason=None, refunds=(),
                                                 cancelled_at=reconciliation.moment(cancelled_at, "cancelledAt"))
        except reconciliation.InvalidOrder as exc:
            log.warning("catch-up skipped a cancellation it cannot read", extra={
                "shop_id": self.shop_id, "reason": f"{order_id}: {exc}"})
            return False
        recorded = order_changes.record_changes(session, self.shop_id, changes)
        if recorded.cancelled:
            log.info("catch-up found a cancellation", extra={"shop_id": self.shop_id, "reason": recorded.summary()})
        return recorded.cancelled

    @staticmethod
    def _finish(cursor: ReconcileCursor) -> None:
        if cursor.walk_newest is not None and cursor.walk_newest > cursor.updated_since:
            cursor.updated_since = cursor.walk_newest
        cursor.last_completed_at = utcnow()
        cursor.last_orders, cursor.last_recovered = cursor.walk_orders, cursor.walk_recovered
        run = {"started_at": at(cursor.walk_started_at), "completed_at": at(cursor.last_completed_at),
               "pages": cursor.walk_pages, "orders": cursor.walk_orders, "recovered": cursor.walk_recovered}
        # A new list, not an append: SQLAlchemy sees a JSON column change only when it is assigned.
        cursor.recent_runs = [run, *(cursor.recent_runs or [])][:RECENT_RUNS]
        cursor.last_error = None
        cursor.walk_since = cursor.walk_after = cursor.walk_newest = cursor.walk_started_at = None
        cursor.walk_pages = cursor.walk_orders = cursor.walk_recovered = 0


def _remember_time_zone(session: Session, shop_id: int, name: str | None) -> None:
    """Keep the store's time zone when Shopify names one we know (the merchant may change it)."""
    if not name or zone_or_none(name) is None:
        return
    session.execute(update(Shop).where(Shop.id == shop_id, Shop.iana_timezone.is_distinct_from(name))
                    .values(iana_timezone=name))


def record_error(db: Database, shop_id: int, reason: str) -> None:
    """Keep why the last run failed where ``flask reconcile status`` and the API show it."""
    with db.session_scope() as session:
        cursor = session.get(ReconcileCursor, shop_id)
        if cursor is not None:
            cursor.last_error = reason[:2000]
