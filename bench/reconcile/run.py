"""Reconciliation benchmark: metrics queries and paid orders reconciled per second as a shop's codes grow.

    .venv/bin/python -m bench.reconcile.run [--sizes 10k,100k,1M] [--orders 2000] [--threads 4]

Builds one shop with N issued codes (bulk SQL, spread over the last 365 days, about 20 % redeemed,
with their paid orders and as many orders again without our codes), growing the same database
through each size. At each size it times ``app.codes.metrics.shop_metrics`` over the last 30 days,
the last 365 days and the last 30 days of the welcome program; reconciles ``--orders`` fresh
``orders/paid`` payloads through ``app.codes.reconciliation.reconcile``, one commit per order as the
webhook job does (single process, then again on ``--threads`` threads); replays the same orders,
which must redeem nothing; checks that exactly the fresh orders' codes were redeemed and no anomaly
was recorded (exit 1 otherwise); then takes those redemptions back, so that the next size's metrics
see the set-up's data only. At the largest size it also runs EXPLAIN (ANALYZE, BUFFERS) on every
statement the metrics and one reconciliation run. Figures go to ``bench/results/``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text

from app import lifecycle
from app.codes.metrics import Period, shop_metrics
from app.codes.reconciliation import PaidOrderFacts, Reconciled, reconcile
from app.config import ROOT
from app.db import Database
from app.models import IssuedCode, PaidOrder, Program, RedemptionAnomaly, Shop
from bench.common import RESULTS_DIR, add_service_options, check_service_options, services

SHOP = "bench.myshopify.com"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
BULK_ORDER_BASE = 5_000_000_000  # the set-up's orders with our codes: this + the code's row number
OTHER_ORDER_BASE = 6_000_000_000  # the set-up's orders without our codes: this + the same row number
FRESH_ORDER_BASE = 9_000_000_000  # the orders the benchmark reconciles
REDEEMED_SHARE = 0.20
# Of the codes not redeemed: these shares expired, revoked, failed; the rest attached.
EXPIRED, REVOKED, FAILED = 0.08, 0.04, 0.03
PROGRAM_SHARES = (("welcome", 0.70), ("referral_friend", 0.20), ("referral_reward", 0.10))
SHIPPING = Decimal("5.00")
CENT = Decimal("0.01")
QUERIES = ("last_30_days", "last_365_days", "last_30_days_welcome")


class CheckFailed(RuntimeError):
    """Reconciliation did not do exactly what it must: the figures would mean nothing."""


def size(value: str) -> int:
    text_ = value.strip().lower().replace("_", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text_[-1:], 1)
    try:
        return int(float(text_[:-1] if factor > 1 else text_) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of codes: {value!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(n) for n in DEFAULT_SIZES),
                        help="comma-separated numbers of issued codes, grown in increasing order in one database "
                             "(10k and 1M are understood; default 10000,100000,1000000)")
    parser.add_argument("--orders", type=int, default=2000,
                        help="fresh paid orders reconciled at each size, one code of ours each (default 2000)")
    parser.add_argument("--threads", type=int, default=4,
                        help="threads for a second batch of --orders fresh orders, each with its own session; "
                             "0 skips it (default 4)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="consecutive rounds each batch of orders is split into; the median round's rate "
                             "is reported (default 5)")
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed runs of each metrics query after one warm-up (default 10)")
    parser.add_argument("--batch", type=int, default=100_000, help="codes inserted per statement (default 100000)")
    add_service_options(parser)
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({size(part) for part in args.sizes.split(",") if part.strip()})
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--sizes: {exc}")
    if not args.sizes or not all(1_000 <= n <= 10_000_000 for n in args.sizes):
        parser.error("--sizes must be numbers of codes in [1000, 10000000]")
    if not (1 <= args.orders <= 100_000 and 0 <= args.threads <= 32 and 1 <= args.repeats <= 1000
            and 1_000 <= args.batch <= 1_000_000 and 1 <= args.rounds <= args.orders):
        parser.error("--orders must be in [1, 100000], --threads in [0, 32], --repeats in [1, 1000], "
                     "--batch in [1000, 1000000], --rounds in [1, --orders]")
    check_service_options(parser, args)
    return args


def cpu_ticks() -> tuple[int, int, int]:
    """(busy, stolen, total) CPU ticks of the whole machine so far (Linux /proc/stat): busy excludes idle,
    I/O wait and the time the hypervisor gave to other machines (steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields[:7]) - fields[3] - fields[4], fields[7], sum(fields)


@contextmanager
def watched(into: dict[str, Any]) -> Iterator[None]:
    """Record in ``into`` the load average before and how many cores the whole machine kept busy meanwhile
    (this process, PostgreSQL, and anything else running: the benchmark cannot tell others apart)."""
    into["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    before = cpu_ticks()
    yield
    busy, stolen, total = (after - then for after, then in zip(cpu_ticks(), before, strict=True))
    into["machine_busy_cores"] = round(busy / max(1, total) * (os.cpu_count() or 1), 2)
    into["stolen_cores"] = round(stolen / max(1, total) * (os.cpu_count() or 1), 2)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- set-up -------------------------------------------------------------------------------------


def uniform(expr: str, salt: int) -> str:
    """A deterministic number in [0, 1) from ``expr`` (a bigint) and ``salt``: the same data every run."""
    return f"(CAST(hashint8extended({expr}, {salt}) & 4503599627370495 AS float8) / 4503599627370496)"


def _status_case() -> str:
    expired, revoked, failed = EXPIRED, EXPIRED + REVOKED, EXPIRED + REVOKED + FAILED
    return (f"CASE WHEN redeemed THEN 'redeemed' WHEN u_status < {expired} THEN 'expired' "
            f"WHEN u_status < {revoked} THEN 'revoked' WHEN u_status < {failed} THEN 'failed' ELSE 'attached' END")


def _program_case() -> str:
    bound, arms = 0.0, []
    for index, (_, share) in enumerate(PROGRAM_SHARES[:-1]):
        bound += share
        arms.append(f"WHEN u_program < {bound} THEN {index}")
    return f"CASE {' '.join(arms)} ELSE {len(PROGRAM_SHARES) - 1} END"


# Rows first..last of the shop's codes, and in the same statement the paid orders of those redeemed
# (our_codes = 1) and as many orders without our codes, each at a time of its own in the last 365 days.
# Amounts: a gross between 20 and 200, the program's percentage off it, 5.00 of shipping.
GROW_SQL = f"""
WITH source AS (
    SELECT i, {uniform('i', 1)} AS u_program, {uniform('i', 2)} AS u_issued, {uniform('i', 3)} AS u_redeemed,
           {uniform('i', 4)} AS u_status, {uniform('i', 5)} AS u_delay, {uniform('i', 6)} AS u_amount
    FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS i
), coded AS (
    SELECT source.*, p.program_id, p.prefix, p.percent, p.days,
           CAST(:now AS timestamptz) - u_issued * interval '365 days' AS issued,
           u_redeemed < {REDEEMED_SHARE} AS redeemed,
           round(CAST(20 + u_amount * 180 AS numeric), 2) AS gross
    FROM source JOIN (VALUES (0, CAST(:program0 AS integer), CAST(:prefix0 AS text), CAST(:percent0 AS numeric),
                              CAST(:days0 AS integer)),
                             (1, :program1, :prefix1, :percent1, :days1),
                             (2, :program2, :prefix2, :percent2, :days2))
                 AS p (ix, program_id, prefix, percent, days) ON p.ix = {_program_case()}
), shaped AS (
    SELECT coded.*, {_status_case()} AS status, round(gross * percent / 100, 2) AS discount FROM coded
), inserted AS (
    INSERT INTO issued_codes (shop_id, program_id, customer_id, code, idempotency_key, status, terms, discount_gid,
                              create_attempts, issued_at, expires_at, metafields_at, attached_at, revoked_at,
                              deactivated_at, redeemed_at, order_id, order_name, order_total, order_subtotal,
                              discount_amount, currency, created_at, updated_at)
    SELECT :shop, program_id, NULL, prefix || upper(lpad(to_hex(i), 8, '0')), 'bench:' || i, status,
           CAST('{{}}' AS json),
           CASE WHEN status <> 'failed' THEN 'gid://shopify/DiscountCodeNode/' || (1000000 + i) END,
           1, issued, issued + days * interval '1 day',
           CASE WHEN status <> 'failed' THEN issued + interval '1 second' END,
           CASE WHEN status <> 'failed' THEN issued + interval '2 seconds' END,
           CASE WHEN status = 'revoked' THEN issued + u_delay * interval '20 days' END,
           CASE WHEN status = 'revoked' THEN issued + u_delay * interval '20 days' + interval '3 seconds' END,
           CASE WHEN redeemed THEN least(issued + u_delay * interval '20 days', CAST(:now AS timestamptz)) END,
           CASE WHEN redeemed THEN {BULK_ORDER_BASE} + i END,
           CASE WHEN redeemed THEN '#' || (100000 + i) END,
           CASE WHEN redeemed THEN gross - discount + {SHIPPING} END,
           CASE WHEN redeemed THEN gross - discount END,
           CASE WHEN redeemed THEN discount END,
           CASE WHEN redeemed THEN 'USD' END,
           issued, issued
    FROM shaped
    RETURNING order_id, order_name, order_total, order_subtotal, discount_amount, redeemed_at
)
INSERT INTO paid_orders (shop_id, shopify_order_id, name, currency, total_price, subtotal_price, total_discounts,
                         paid_at, our_codes, other_codes, source, recorded_at)
SELECT :shop, order_id, order_name, 'USD', order_total, order_subtotal, discount_amount, redeemed_at, 1, 0,
       'webhook', redeemed_at
FROM inserted WHERE order_id IS NOT NULL
UNION ALL
SELECT :shop, order_id - {BULK_ORDER_BASE} + {OTHER_ORDER_BASE}, '#O' || (order_id - {BULK_ORDER_BASE}), 'USD',
       other.gross + {SHIPPING}, other.gross, 0, other.paid, 0, 0, 'webhook', other.paid
FROM inserted CROSS JOIN LATERAL (
    SELECT round(CAST(20 + {uniform('order_id', 7)} * 180 AS numeric), 2) AS gross,
           CAST(:now AS timestamptz) - {uniform('order_id', 8)} * interval '365 days' AS paid) AS other
WHERE order_id IS NOT NULL
"""


def create_shop(db: Database, now: datetime) -> tuple[int, dict[str, Program]]:
    """An installed-looking shop (no token: reconciliation and metrics never read it) and its default programs."""
    with db.session_scope() as session:
        shop = Shop(domain=SHOP, api_version="2026-10", settings={}, scopes="read_customers,write_discounts",
                    installed_at=now - timedelta(days=400), setup_completed_at=now - timedelta(days=400))
        session.add(shop)
        session.flush()
        lifecycle.create_default_programs(session, shop.id)
        shop_id = shop.id
    with db.session_scope() as session:
        programs = {p.kind: p for p in session.scalars(select(Program).where(Program.shop_id == shop_id))}
    return shop_id, programs


def grow(db: Database, shop_id: int, programs: dict[str, Program], have: int, want: int, batch: int,
         now: datetime) -> dict[str, Any]:
    """Add codes have+1..want (and their orders), then VACUUM ANALYZE and CHECKPOINT; timings in seconds."""
    params: dict[str, Any] = {"shop": shop_id, "now": now}
    for index, (kind, _) in enumerate(PROGRAM_SHARES):
        program = programs[kind]
        params.update({f"program{index}": program.id, f"prefix{index}": program.code_prefix,
                       f"percent{index}": program.value, f"days{index}": program.expires_after_days or 30})
    started = time.perf_counter()
    orders = 0
    for first in range(have + 1, want + 1, batch):
        last = min(want, first + batch - 1)
        with db.engine.begin() as connection:
            orders += connection.execute(text(GROW_SQL), {**params, "first": first, "last": last}).rowcount
        print(f"  {last:>10,} codes, {orders:>9,} orders added so far, {time.perf_counter() - started:6.1f} s",
              flush=True)
    inserted = time.perf_counter()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE issued_codes, paid_orders, programs, shops, redemption_anomalies")
        vacuumed = time.perf_counter()
        # Flush what the inserts dirtied now rather than under the measurements.
        connection.exec_driver_sql("CHECKPOINT")
    done = time.perf_counter()
    print(f"  VACUUM ANALYZE {vacuumed - inserted:.1f} s, CHECKPOINT {done - vacuumed:.1f} s", flush=True)
    return {"codes_added": want - have, "paid_orders_added": orders, "insert_seconds": round(inserted - started, 2),
            "vacuum_analyze_seconds": round(vacuumed - inserted, 2), "checkpoint_seconds": round(done - vacuumed, 2),
            "seconds": round(vacuumed - started, 2)}  # inserts + VACUUM ANALYZE; the checkpoint apart


def census(db: Database, shop_id: int) -> dict[str, Any]:
    with db.session_scope() as session:
        statuses = dict(session.execute(select(IssuedCode.status, func.count()).where(IssuedCode.shop_id == shop_id)
                                        .group_by(IssuedCode.status)).all())
        orders = dict(session.execute(select(PaidOrder.our_codes, func.count()).where(PaidOrder.shop_id == shop_id)
                                      .group_by(PaidOrder.our_codes)).all())
        sizes = {table: session.scalar(text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table})
                 for table in ("issued_codes", "paid_orders")}
    return {"codes": sum(statuses.values()), "statuses": dict(sorted(statuses.items())),
            "paid_orders": {"with_our_codes": orders.get(1, 0), "without": orders.get(0, 0)},
            "table_mb": {table: round(value / 2**20, 1) for table, value in sizes.items()}}


# --- metrics ------------------------------------------------------------------------------------


def periods(today: date, programs: dict[str, Program]) -> dict[str, tuple[Period, int | None]]:
    return {"last_30_days": (Period(today - timedelta(days=29), today), None),
            "last_365_days": (Period(today - timedelta(days=364), today), None),
            "last_30_days_welcome": (Period(today - timedelta(days=29), today), programs["welcome"].id)}


def metrics_once(db: Database, shop_id: int, period: Period, program_id: int | None) -> tuple[float, dict[str, Any]]:
    """One call as a request makes it, in a session of its own; (seconds, the metrics)."""
    with db.sessions() as session:
        started = time.perf_counter()
        found = shop_metrics(session, shop_id, period, program_id=program_id, daily=True)
        elapsed = time.perf_counter() - started
        session.rollback()
    return elapsed, found


def time_metrics(db: Database, shop_id: int, programs: dict[str, Program], repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, (period, program_id) in periods(datetime.now(UTC).date(), programs).items():
        machine: dict[str, Any] = {}
        with watched(machine):
            metrics_once(db, shop_id, period, program_id)  # warm-up
            times, found = [], {}
            for _ in range(repeats):
                elapsed, found = metrics_once(db, shop_id, period, program_id)
                times.append(elapsed * 1000)
        totals = found["totals"]
        results[name] = {
            "from": period.first.isoformat(), "to": period.last.isoformat(), "program_id": program_id,
            "p50_ms": round(percentile(times, 50), 2), "max_ms": round(max(times), 2),
            "min_ms": round(min(times), 2), "runs_ms": [round(t, 2) for t in times],
            "figures": {key: totals[key] for key in ("codes_issued", "codes_redeemed", "orders_with_codes",
                                                     "orders_without_codes", "redemption_rate",
                                                     "median_seconds_to_redemption")},
            **machine,
        }
        print(f"  metrics {name:<22} p50 {results[name]['p50_ms']:9.2f} ms   max {results[name]['max_ms']:9.2f} ms"
              f"   ({totals['codes_issued']:,} codes issued, {totals['codes_redeemed']:,} redeemed in range; "
              f"machine busy {machine['machine_busy_cores']} cores)",
              flush=True)
    return results


@contextmanager
def captured_statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany):  # type: ignore[no-untyped-def]
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)


def statement_label(statement: str) -> str:
    lowered = " ".join(statement.lower().split())
    if "from programs" in lowered:
        return "programs of the shop"
    if "redemption_anomalies" in lowered:
        return "anomalies in range"
    if "from paid_orders" in lowered:
        return "paid orders by day"
    if "percentile_cont" in lowered:
        return "median by program" if "group by" in lowered else "median overall"
    if "distinct" in lowered:
        return "order revenue by day and program"
    if "count(issued_codes.redeemed_at)" in lowered:
        return "codes issued by day and program"
    return "codes redeemed by day and program"


def plan_nodes(node: dict[str, Any], depth: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    yield depth, node
    for child in node.get("Plans", []):
        yield from plan_nodes(child, depth + 1)


def describe(node: dict[str, Any]) -> str:
    strategy = f"{node['Strategy']} " if node.get("Strategy") not in (None, "Plain") else ""
    parts = [("Parallel " if node.get("Parallel Aware") else "") + strategy + node["Node Type"]]
    if node.get("Index Name"):
        parts.append(f"using {node['Index Name']}")
    if node.get("Relation Name"):
        parts.append(f"on {node['Relation Name']}")
    details = [f"rows={node.get('Actual Rows')}", f"loops={node.get('Actual Loops')}",
               f"ms={node.get('Actual Total Time')}"]
    if node.get("Workers Launched") is not None:
        details.append(f"workers={node['Workers Launched']}")
    if "Heap Fetches" in node:
        details.append(f"heap fetches={node['Heap Fetches']}")
    if node.get("Sort Method"):
        details.append(f"sort={node['Sort Method']} {node.get('Sort Space Used')} kB {node.get('Sort Space Type')}")
    if node.get("Shared Read Blocks"):
        details.append(f"read={node['Shared Read Blocks']}")
    return f"{' '.join(parts)} ({', '.join(details)})"


EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
WATCHED = ("issued_codes", "paid_orders")


def explained_plan(label: str, statement: str, document: list[dict[str, Any]]) -> dict[str, Any]:
    root = document[0]
    nodes = list(plan_nodes(root["Plan"]))
    return {
        "statement": label,
        "node_types": sorted({node["Node Type"] for _, node in nodes}),
        "scans": [describe(node) for _, node in nodes if "Scan" in node["Node Type"]],
        "seq_scan_on": sorted({node["Relation Name"] for _, node in nodes if node["Node Type"] == "Seq Scan"}),
        "execution_ms": round(root["Execution Time"], 2), "planning_ms": round(root["Planning Time"], 2),
        "shared_hit_blocks": root["Plan"].get("Shared Hit Blocks"),
        "shared_read_blocks": root["Plan"].get("Shared Read Blocks"),
        "plan": ["  " * depth + describe(node) for depth, node in nodes],
        "sql": " ".join(statement.split()),
    }


def explain_metrics(db: Database, shop_id: int, programs: dict[str, Program]) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement one ``shop_metrics`` call runs, for each query.

    Where the planner chose a Seq Scan on issued_codes or paid_orders, the same statement is explained
    again with ``enable_seqscan`` off, to show what the index would have cost instead.
    """
    explained: dict[str, Any] = {}
    for name, (period, program_id) in periods(datetime.now(UTC).date(), programs).items():
        with captured_statements(db) as statements:
            metrics_once(db, shop_id, period, program_id)
        plans = []
        # Settings the call makes for its transaction (work_mem) are made again before each EXPLAIN.
        settings = [statement for statement, _ in statements if statement.lstrip().upper().startswith("SET ")]
        for statement, parameters in statements:
            if statement in settings:
                continue
            with db.engine.connect() as connection:
                for setting in settings:
                    connection.exec_driver_sql(setting)
                plan = explained_plan(statement_label(statement), statement,
                                      connection.exec_driver_sql(EXPLAIN + statement, parameters).scalar())
                if set(plan["seq_scan_on"]) & set(WATCHED):
                    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
                    instead = explained_plan(plan["statement"], statement,
                                             connection.exec_driver_sql(EXPLAIN + statement, parameters).scalar())
                    plan["without_seq_scan"] = {key: instead[key] for key in ("execution_ms", "scans", "plan")}
                connection.rollback()
            plans.append(plan)
        explained[name] = plans
    return explained


def explain_reconcile(db: Database, shop_id: int, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the statements reconciling one fresh order, in one transaction rolled back."""
    with captured_statements(db) as statements, db.sessions() as session:
        reconcile(session, shop_id, PaidOrderFacts.from_webhook(payload), "webhook")
        session.rollback()
    labels = iter(("find our codes", "record the paid order", "redeem the code (compare-and-set)"))
    plans = []
    with db.engine.connect() as connection:
        for statement, parameters in statements:
            plans.append(explained_plan(next(labels, "other"), statement,
                                        connection.exec_driver_sql(EXPLAIN + statement, parameters).scalar()))
        connection.rollback()
    return plans


def print_plans(explained: dict[str, Any]) -> None:
    for name, plans in explained.items():
        print(f"\nEXPLAIN (ANALYZE, BUFFERS) of {name.replace('_', ' ')}:")
        for plan in plans:
            flag = f"  SEQ SCAN on {', '.join(plan['seq_scan_on'])}" if plan["seq_scan_on"] else ""
            print(f"  {plan['statement']}: {plan['execution_ms']} ms, "
                  f"{plan['shared_hit_blocks']} hit / {plan['shared_read_blocks']} read blocks{flag}")
            for line in plan["plan"]:
                print(f"      {line}")
            if "without_seq_scan" in plan:
                print(f"    with enable_seqscan off: {plan['without_seq_scan']['execution_ms']} ms")
                for line in plan["without_seq_scan"]["plan"]:
                    print(f"      {line}")


# --- reconciliation -----------------------------------------------------------------------------


class Orders:
    """Fresh order ids, never used before in this database."""

    def __init__(self, start: int = 0) -> None:
        self.next = start

    def take(self) -> int:
        self.next += 1
        return self.next


def order_payload(order_id: int, number: int, code: str, gross: Decimal, percent: Decimal,
                  processed_at: datetime) -> dict[str, Any]:
    """An ``orders/paid`` body shaped like Shopify's Order resource (the fields the parser reads and a few
    more), one line item, one code of ours, paid in the shop's currency."""
    discount = (gross * percent / 100).quantize(CENT)
    subtotal = gross - discount
    total = subtotal + SHIPPING

    def money(amount: Decimal) -> dict[str, Any]:
        return {"shop_money": {"amount": f"{amount:.2f}", "currency_code": "USD"},
                "presentment_money": {"amount": f"{amount:.2f}", "currency_code": "USD"}}

    moment = processed_at.isoformat()
    return {
        "id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}", "name": f"#R{number}",
        "currency": "USD", "presentment_currency": "USD", "financial_status": "paid",
        "processed_at": moment, "created_at": moment, "updated_at": moment,
        "total_price": f"{total:.2f}", "total_price_set": money(total),
        "subtotal_price": f"{subtotal:.2f}", "subtotal_price_set": money(subtotal),
        "total_discounts": f"{discount:.2f}", "total_discounts_set": money(discount),
        "discount_codes": [{"code": code, "amount": f"{discount:.2f}", "type": "percentage"}],
        "discount_applications": [{"target_type": "line_item", "type": "discount_code", "value": f"{percent}",
                                   "value_type": "percentage", "allocation_method": "across",
                                   "target_selection": "all", "code": code}],
        "line_items": [{"id": order_id * 10 + 1, "title": "Item", "price": f"{gross:.2f}", "quantity": 1,
                        "discount_allocations": [{"amount": f"{discount:.2f}", "amount_set": money(discount),
                                                  "discount_application_index": 0}]}],
        "shipping_lines": [{"id": order_id * 10 + 2, "title": "Standard", "price": f"{SHIPPING:.2f}",
                            "price_set": money(SHIPPING), "discount_allocations": []}],
        "customer": {"id": 7_000_000 + number, "admin_graphql_api_id": f"gid://shopify/Customer/{7_000_000 + number}"},
    }


def fresh_orders(db: Database, shop_id: int, count: int, numbers: Orders) -> list[dict[str, Any]]:
    """``count`` payloads, each using one attached, not yet redeemed code of the shop (spread over its codes)."""
    with db.session_scope() as session:
        rows = session.execute(text(
            "SELECT c.code, p.value FROM issued_codes c JOIN programs p ON p.id = c.program_id "
            "WHERE c.shop_id = :shop AND c.status = 'attached' AND c.order_id IS NULL "
            "ORDER BY hashint4(c.id) LIMIT :count"), {"shop": shop_id, "count": count}).all()
    if len(rows) < count:
        raise CheckFailed(f"only {len(rows)} attached codes left to redeem, {count} wanted: use bigger --sizes")
    now = datetime.now(UTC)
    payloads = []
    for code, percent in rows:
        number = numbers.take()
        gross = Decimal(20 + (number * 7919) % 18000 / 100).quantize(CENT)
        payloads.append(order_payload(FRESH_ORDER_BASE + number, number, code, gross, Decimal(percent),
                                      now - timedelta(seconds=count - len(payloads))))
    return payloads


def reconcile_orders(db: Database, shop_id: int, payloads: list[dict[str, Any]]) -> tuple[list[Reconciled],
                                                                                           list[float]]:
    """Each order in a session of its own, committed, as the webhook job does; (results, seconds per order)."""
    results, latencies = [], []
    for payload in payloads:
        started = time.perf_counter()
        with db.sessions() as session:
            result = reconcile(session, shop_id, PaidOrderFacts.from_webhook(payload), "webhook")
            session.commit()
        latencies.append(time.perf_counter() - started)
        results.append(result)
    return results, latencies


def timed(db: Database, shop_id: int, payloads: list[dict[str, Any]], threads: int,
          rounds: int) -> tuple[dict[str, Any], list[Reconciled]]:
    """Reconcile ``payloads`` on ``threads`` threads (1: this one), each with its own sessions, in ``rounds``
    consecutive rounds: the median round's rate is the figure, less swayed by a burst of other work on
    the machine than the rate over the whole run (which is kept too)."""
    machine: dict[str, Any] = {}
    results: list[Reconciled] = []
    latencies: list[float] = []
    elapsed = cpu = 0.0
    rates = []
    size = math.ceil(len(payloads) / rounds)
    with watched(machine):
        for start in range(0, len(payloads), size):
            part = payloads[start:start + size]
            done, took, seconds, used = _timed(db, shop_id, part, threads)
            results += done
            latencies += took
            elapsed, cpu = elapsed + seconds, cpu + used
            rates.append(len(part) / seconds)
    summary = {"orders": len(payloads), "threads": threads, "rounds": len(rates),
               "orders_per_second": round(statistics.median(rates), 1),
               "round_orders_per_second": [round(rate, 1) for rate in rates],
               "overall_orders_per_second": round(len(payloads) / elapsed, 1), "seconds": round(elapsed, 3),
               "latency_ms": {"p50": round(percentile(latencies, 50) * 1000, 2),
                              "p99": round(percentile(latencies, 99) * 1000, 2),
                              "max": round(max(latencies) * 1000, 2)},
               "client_cpu_ms_per_order": round(cpu * 1000 / len(payloads), 3), **machine}
    return summary, results


def _timed(db: Database, shop_id: int, payloads: list[dict[str, Any]],
           threads: int) -> tuple[list[Reconciled], list[float], float, float]:
    cpu, started = time.process_time(), time.perf_counter()
    if threads == 1:
        results, latencies = reconcile_orders(db, shop_id, payloads)
    else:
        barrier = threading.Barrier(threads)

        def run(part: list[dict[str, Any]]) -> tuple[list[Reconciled], list[float]]:
            barrier.wait()
            return reconcile_orders(db, shop_id, part)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(run, [payloads[n::threads] for n in range(threads)]))
        results = [result for part, _ in parts for result in part]
        latencies = [latency for _, part in parts for latency in part]
    return results, latencies, time.perf_counter() - started, time.process_time() - cpu


def redeemed_count(db: Database, shop_id: int) -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(IssuedCode).where(
            IssuedCode.shop_id == shop_id, IssuedCode.order_id.is_not(None))) or 0


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


def say(what: str, figures: dict[str, Any]) -> None:
    rates = figures["round_orders_per_second"]
    print(f"  {what}: {figures['orders_per_second']:7.1f} orders/s (rounds {min(rates):.0f}-{max(rates):.0f}), "
          f"p50 {figures['latency_ms']['p50']} ms, p99 {figures['latency_ms']['p99']} ms, "
          f"client CPU {figures['client_cpu_ms_per_order']} ms/order, machine busy {figures['machine_busy_cores']} "
          f"cores", flush=True)


def measure_reconciliation(db: Database, shop_id: int, args: argparse.Namespace, numbers: Orders) -> dict[str, Any]:
    before = redeemed_count(db, shop_id)
    first_number = numbers.next + 1
    results: dict[str, Any] = {}

    fresh = fresh_orders(db, shop_id, args.orders, numbers)
    results["single"], done = timed(db, shop_id, fresh, 1, args.rounds)
    check(all(r.new_order and len(r.redeemed) == 1 and not r.already and not r.anomalies and not r.other_codes
              for r in done), "a fresh order did not redeem exactly its one code")
    say(f"{args.orders} fresh orders, 1 thread", results["single"])

    results["replay"], done = timed(db, shop_id, fresh, 1, args.rounds)
    check(all(not r.new_order and not r.redeemed and r.already == 1 and not r.anomalies for r in done),
          "a replayed order redeemed something, or did not find its code redeemed by itself")
    say(f"{args.orders} replays,      1 thread", results["replay"])

    if args.threads:
        more = fresh_orders(db, shop_id, args.orders, numbers)
        results["threads"], done = timed(db, shop_id, more, args.threads, args.rounds)
        check(all(r.new_order and len(r.redeemed) == 1 and not r.already and not r.anomalies for r in done),
              f"a fresh order on {args.threads} threads did not redeem exactly its one code")
        say(f"{args.orders} fresh orders, {args.threads} threads", results["threads"])

    expected = args.orders * (2 if args.threads else 1)
    ids = (FRESH_ORDER_BASE + first_number, FRESH_ORDER_BASE + numbers.next)
    with db.session_scope() as session:
        by_order = dict(session.execute(
            select(IssuedCode.status, func.count()).where(IssuedCode.shop_id == shop_id,
                                                          IssuedCode.order_id.between(*ids))
            .group_by(IssuedCode.status)).all())
        orders = session.scalar(select(func.count()).select_from(PaidOrder).where(
            PaidOrder.shop_id == shop_id, PaidOrder.shopify_order_id.between(*ids), PaidOrder.our_codes == 1)) or 0
        anomalies = session.scalar(select(func.count()).select_from(RedemptionAnomaly)) or 0
    after = redeemed_count(db, shop_id)
    checks = {"expected_redemptions": expected, "codes_redeemed_by_these_orders": by_order.get("redeemed", 0),
              "other_statuses": sum(n for status, n in by_order.items() if status != "redeemed"),
              "redeemed_codes_added": after - before, "paid_orders_recorded": orders, "redemption_anomalies": anomalies}
    check(checks["codes_redeemed_by_these_orders"] == checks["redeemed_codes_added"] == orders == expected
          and checks["other_statuses"] == 0 and anomalies == 0, f"reconciliation did not add up: {checks}")
    results["checks"] = {**checks, "ok": True}
    undo(db, shop_id, ids)
    return results


def undo(db: Database, shop_id: int, ids: tuple[int, int]) -> None:
    """Take back this step's redemptions and orders (the codes are attached again, unused), so that the
    next size's metrics see the set-up's data only and not a pile of redemptions dated today."""
    with db.session_scope() as session:
        session.execute(text(
            "UPDATE issued_codes SET status = 'attached', redeemed_at = NULL, order_id = NULL, order_name = NULL, "
            "order_total = NULL, order_subtotal = NULL, discount_amount = NULL, currency = NULL "
            "WHERE shop_id = :shop AND order_id BETWEEN :first AND :last"),
            {"shop": shop_id, "first": ids[0], "last": ids[1]})
        session.execute(text("DELETE FROM paid_orders WHERE shop_id = :shop "
                             "AND shopify_order_id BETWEEN :first AND :last"),
                        {"shop": shop_id, "first": ids[0], "last": ids[1]})


# --- the run ------------------------------------------------------------------------------------


def print_table(sizes: list[dict[str, Any]]) -> None:
    threads = next((s["reconcile"]["threads"]["threads"] for s in sizes if "threads" in s["reconcile"]), None)
    header = (f"{'codes':>10} {'setup s':>8} {'30 d p50/max ms':>17} {'365 d p50/max ms':>18} "
              f"{'30 d welcome p50/max':>21} {'orders/s':>9} {'replays/s':>10}")
    if threads:
        header += " " + f"{threads} thr orders/s".rjust(16)
    print("\n" + header)
    for entry in sizes:
        metrics, rec = entry["metrics"], entry["reconcile"]
        line = f"{entry['codes']:>10,} {entry['setup']['seconds']:>8.1f}"
        for name, width in zip(QUERIES, (17, 18, 21), strict=True):
            figures = f"{metrics[name]['p50_ms']:.1f} / {metrics[name]['max_ms']:.1f}"
            line += f" {figures:>{width}}"
        line += f" {rec['single']['orders_per_second']:>9.1f} {rec['replay']['orders_per_second']:>10.1f}"
        if threads:
            line += f" {rec['threads']['orders_per_second']:>16.1f}"
        print(line)


def run(args: argparse.Namespace, db: Database) -> dict[str, Any]:
    now = datetime.now(UTC)
    shop_id, programs = create_shop(db, now)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("CHECKPOINT")  # what emptying and migrating dirtied is not the set-up's
    numbers, have, results, explained = Orders(), 0, [], {}
    for n in args.sizes:
        print(f"\n{n:,} codes: growing from {have:,}", flush=True)
        setup = grow(db, shop_id, programs, have, n, args.batch, now)
        have = n
        found = census(db, shop_id)
        print(f"  {found['codes']:,} codes {found['statuses']}, paid orders {found['paid_orders']}, "
              f"tables {found['table_mb']} MB", flush=True)
        entry: dict[str, Any] = {"codes": n, "setup": setup, "census": found,
                                 "metrics": time_metrics(db, shop_id, programs, args.repeats)}
        if n == args.sizes[-1]:
            explained = explain_metrics(db, shop_id, programs)
            explained["reconcile_one_order"] = explain_reconcile(db, shop_id,
                                                                 fresh_orders(db, shop_id, 1, Orders(start=10**8))[0])
            print_plans(explained)
        entry["reconcile"] = measure_reconciliation(db, shop_id, args, numbers)
        results.append(entry)
    seq_scans = sorted({f"{name}: {plan['statement']} on {table}" for name, plans in explained.items()
                        for plan in plans for table in plan["seq_scan_on"] if table in WATCHED})
    return {"sizes": results, "plans_at": args.sizes[-1], "plans": explained,
            "plan_summary": {name: {plan["statement"]: plan["node_types"] for plan in plans}
                             for name, plans in explained.items()},
            "seq_scans_on_issued_codes_or_paid_orders": seq_scans}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = time.perf_counter()
    with services(args) as (db, _redis, machine):
        results = run(args, db)
    print_table(results["sizes"])
    scans = results["seq_scans_on_issued_codes_or_paid_orders"]
    print(f"\nplans at {results['plans_at']:,} codes: "
          + (f"Seq Scan in {', '.join(scans)}" if scans else "no Seq Scan on issued_codes or paid_orders"))
    print("checks: every fresh order redeemed exactly its code, every replay nothing, no anomaly: OK")
    out = RESULTS_DIR / f"reconcile-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "reconcile", "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "settings": {"sizes": args.sizes, "orders": args.orders, "threads": args.threads, "rounds": args.rounds,
                     "repeats": args.repeats,
                     "batch": args.batch, "redeemed_share": REDEEMED_SHARE,
                     "database": args.database.render_as_string()},
        "machine": machine, "results": results,
    }, indent=2, default=str) + "\n")
    print(f"results: {out.relative_to(ROOT)} ({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as exc:
        print(f"\nCHECK FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
