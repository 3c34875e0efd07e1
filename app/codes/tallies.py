"""Daily tallies of the metrics' figures, so that a year's report reads days rather than codes.

A year's report of a shop with a million codes (and a hundred thousand referrals) would otherwise
aggregate a million index entries (one to two seconds). ``code_tallies`` holds, per shop, day (of the
shop's ``tally_zone``), program, currency and detail, the figures ``app.codes.metrics`` sums
(``models.CodeTally`` lists them): codes issued and how many of them are redeemed by now, codes
redeemed and their discount, orders and revenue per program, the shop's paid orders with and without
our codes, and the referral loop's clicks, friend codes, friend orders and rewards.

How they stay exact (PostgreSQL; SQLite has no triggers, and the metrics read the codes there):

1. Statement-level triggers on ``issued_codes``, ``paid_orders``, ``referrals``, ``pool_codes`` and
   ``referral_click_hours`` (migration 0018) append what each
   statement changed to ``code_tally_changes``, per quarter hour (UTC): every write path is covered,
   bulk updates and deletes included, and writers never wait on each other for a day's row.
2. ``fold_changes`` (rq cron, every minute) moves those changes into the days of each shop's zone.
3. A report reads its days from ``code_tallies`` plus the changes not folded yet (``metrics``), so it
   is exact at any moment, folded or not.
4. A shop whose store time zone is not the zone of its tallies (a new shop; catch-up has just read the
   store's zone) is rebuilt: its tallies and changes are replaced by a replay of all its rows, in one
   REPEATABLE READ transaction, so that a change committed meanwhile is neither lost nor counted twice.
   Until then its reports read the codes.

One fold runs at a time (a session advisory lock): two would not miscount, but a rebuild must not
interleave with a fold of the same shop's changes into the old zone's days.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, select, text

from app.codes.metrics import time_zone_of
from app.db import Database
from app.models import TALLY_FIGURES, Shop

log = logging.getLogger(__name__)

FOLD_BATCH = 20_000  # changes folded per transaction
FOLD_ROUNDS = 50  # batches per run at most: a backlog beyond that waits for the next minute
FOLD_LOCK = 0x0C0DE7A11  # pg_try_advisory_lock key: one fold (or rebuild) at a time

_SUMS = ", ".join(f"sum(m.{name})" for name in TALLY_FIGURES)
_ADD = ", ".join(f"{name} = code_tallies.{name} + excluded.{name}" for name in TALLY_FIGURES)
_FOLD = f"""
WITH picked AS (
    SELECT id FROM code_tally_changes WHERE CAST(:shop AS integer) IS NULL OR shop_id = :shop
    ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED
), moved AS (
    DELETE FROM code_tally_changes AS c USING picked WHERE c.id = picked.id RETURNING c.*
), folded AS (
    INSERT INTO code_tallies (shop_id, day, program_id, currency, detail, {", ".join(TALLY_FIGURES)})
    SELECT m.shop_id, CAST(timezone(s.tally_zone, m.at) AS date) AS day, m.program_id, m.currency, m.detail, {_SUMS}
    FROM moved AS m JOIN shops AS s ON s.id = m.shop_id AND s.tally_zone IS NOT NULL
    GROUP BY m.shop_id, day, m.program_id, m.currency, m.detail
    ORDER BY m.shop_id, day, m.program_id, m.currency, m.detail
    ON CONFLICT (shop_id, day, program_id, currency, detail) DO UPDATE SET {_ADD}
)
SELECT count(*) FROM moved
"""  # noqa: S608 -- column names from TALLY_FIGURES, values bound


def fold(connection: Connection, shop_id: int | None = None, batch: int = FOLD_BATCH) -> int:
    """Move up to ``batch`` changes (of one shop, or of all) into their days; how many were moved.

    Changes of a shop whose tallies are not built yet (or of a shop deleted since) are dropped: the
    shop's rebuild replays its rows, which hold them."""
    return int(connection.execute(text(_FOLD), {"shop": shop_id, "batch": batch}).scalar_one())


def rebuild(db: Database, shop_id: int, zone: str) -> None:
    """Replace the shop's tallies by its rows' figures, in the days of ``zone``.

    REPEATABLE READ: the deletes, the replay and the fold see one snapshot, so a change committed by
    another transaction meanwhile stays in ``code_tally_changes`` (its rows are not in the replay) and
    is folded next, in the new zone's days.
    """
    with db.engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection, connection.begin():
        params = {"shop": shop_id, "zone": zone}
        connection.execute(text("DELETE FROM code_tallies WHERE shop_id = :shop"), params)
        connection.execute(text("DELETE FROM code_tally_changes WHERE shop_id = :shop"), params)
        connection.execute(text("SELECT oncecode_tally_replay(:shop)"), params)
        connection.execute(text("UPDATE shops SET tally_zone = :zone WHERE id = :shop"), params)
        while fold(connection, shop_id) == FOLD_BATCH:
            pass


def stale_shops(db: Database) -> list[tuple[int, str]]:
    """The shops whose tallies are not in their store's time zone, with that zone."""
    with db.session_scope() as session:
        shops = session.scalars(select(Shop).where(
            Shop.tally_zone.is_(None) | Shop.tally_zone.is_distinct_from(Shop.iana_timezone))).all()
        return [(shop.id, zone) for shop in shops if (zone := time_zone_of(shop)) != shop.tally_zone]


def fold_changes(db: Database, rounds: int = FOLD_ROUNDS) -> dict[str, Any]:
    """Rebuild the shops whose zone changed, then fold the changes of all (see the module's docstring).

    Returns what it did; ``skipped`` when another fold holds the lock."""
    result: dict[str, Any] = {"rebuilt": 0, "folded": 0, "skipped": False, "failed": []}
    if db.engine.dialect.name != "postgresql":
        return result
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
        if not lock.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": FOLD_LOCK}).scalar_one():
            return {**result, "skipped": True}
        try:
            for shop_id, zone in stale_shops(db):
                try:
                    rebuild(db, shop_id, zone)
                    result["rebuilt"] += 1
                except Exception:  # one shop's failure (a zone PostgreSQL does not know) must not stop the rest
                    log.exception("tallies not rebuilt", extra={"shop_id": shop_id, "reason": zone})
                    result["failed"].append(shop_id)
            for _ in range(rounds):
                with db.engine.begin() as connection:
                    moved = fold(connection)
                result["folded"] += moved
                if moved < FOLD_BATCH:
                    break
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": FOLD_LOCK})
    return result
