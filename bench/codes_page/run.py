"""The Codes page at a million codes: every filter the page offers, EXPLAINed, and the CSV export's memory.

    .venv/bin/python -m bench.codes_page.run [--codes 1000000] [--skip-export]

Builds (bulk SQL) one shop with ``--codes`` codes spread over the last 365 days (ids in issue order,
statuses and programs mixed as a live store's, half a million customers), a second shop with a fifth
as many and a small shop with 100, then ANALYZEs. For each filter combination of the page
(``issuance.list_codes``, as the page calls it: 51 rows, newest first) it runs the statement under
EXPLAIN (ANALYZE, BUFFERS) and prints the time and the indexes the plan uses; then it exports the big
shop's codes through ``GET /admin/codes.csv`` (the Flask app, streamed) and samples the process's
resident memory every 10,000 rows. Figures go to ``bench/results/codes_page.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, select, text

from app import lifecycle
from app.codes import issuance
from app.config import DEFAULT_SCOPES
from app.db import Database
from app.models import IssuedCode, Program, Shop
from bench.common import RESULTS_DIR, add_service_options, check_service_options, reused, services

BIG, SECOND, SMALL = "big.myshopify.com", "second.myshopify.com", "small.myshopify.com"
PAGE = 51
PREFIXES = {"welcome": "WELCOME-", "referral_friend": "FRIEND-", "referral_reward": "THANKS-", "manual": "GIFT-"}


def build_shop(db: Database, domain: str, codes: int, customers: int) -> int:
    """A shop with ``codes`` codes, oldest first, over the last 365 days; returns its id."""
    with db.session_scope() as session:
        shop = Shop(domain=domain, api_version="2026-10", settings={}, installed_at=datetime.now(UTC),
                    scopes=DEFAULT_SCOPES, access_token=b"not-used")
        session.add(shop)
        session.flush()
        lifecycle.create_default_programs(session, shop.id)
        session.add(Program(shop_id=shop.id, active=True, kind="manual", name="Gift", value_type="percentage",
                            value=Decimal("20"), code_prefix="GIFT-"))
        session.flush()
        shop_id = shop.id
        programs = {p.kind: p.id for p in session.scalars(select(Program).where(Program.shop_id == shop_id))}
        session.execute(text("INSERT INTO customers (shop_id, shopify_customer_id, created_at) "
                             "SELECT :shop, 7000000000 + n, now() FROM generate_series(1, :n) AS n"),
                        {"shop": shop_id, "n": customers})
    with db.session_scope() as session:
        first_customer = session.scalar(text("SELECT min(id) FROM customers WHERE shop_id = :shop"), {"shop": shop_id})
        session.execute(text("""
            WITH shaped AS (
              SELECT n, random() AS u, random() AS v,
                     now() - interval '365 days' + (n::float / :codes) * interval '365 days' AS issued
              FROM generate_series(1, :codes) AS n)
            INSERT INTO issued_codes (shop_id, program_id, customer_id, code, idempotency_key, status, terms,
                                      discount_gid, create_attempts, issued_at, expires_at, attached_at,
                                      redeemed_at, order_id, order_name, order_total, discount_amount, currency,
                                      last_error, created_at, updated_at)
            SELECT :shop,
                   CASE WHEN v < 0.70 THEN :welcome WHEN v < 0.90 THEN :friend WHEN v < 0.98 THEN :reward
                        ELSE :manual END,
                   CASE WHEN v < 0.90 OR v >= 0.98 THEN :first_customer + (n % :customers) END,
                   CASE WHEN v < 0.70 THEN 'WELCOME-' WHEN v < 0.90 THEN 'FRIEND-' WHEN v < 0.98 THEN 'THANKS-'
                        ELSE 'GIFT-' END || upper(substr(md5(n::text || :shop), 1, 10)),
                   'bench:' || n, st, '{}',
                   CASE WHEN st NOT IN ('failed', 'reserved') THEN 'gid://shopify/DiscountCodeNode/' || n END,
                   1, issued, issued + interval '30 days',
                   CASE WHEN st NOT IN ('failed', 'reserved', 'created') THEN issued + interval '2 seconds' END,
                   CASE WHEN st = 'redeemed' THEN issued + interval '3 days' END,
                   CASE WHEN st = 'redeemed' THEN 5000000000 + n END,
                   CASE WHEN st = 'redeemed' THEN '#' || (100000 + n) END,
                   CASE WHEN st = 'redeemed' THEN 80.00 END,
                   CASE WHEN st = 'redeemed' THEN 8.00 END,
                   CASE WHEN st = 'redeemed' THEN 'USD' END,
                   CASE WHEN st = 'failed' THEN 'Code must be unique.' END,
                   issued, issued
            FROM (SELECT *, CASE WHEN issued > now() - interval '30 days' AND u < 0.05 THEN 'reserved'
                                 WHEN issued < now() - interval '30 days' AND u < 0.15 THEN 'expired'
                                 WHEN u < 0.35 THEN 'redeemed'
                                 WHEN u < 0.38 THEN 'revoked'
                                 WHEN u < 0.385 THEN 'failed'
                                 ELSE 'attached' END AS st FROM shaped) AS s
        """), {"shop": shop_id, "codes": codes, "customers": customers, "first_customer": first_customer,
               "welcome": programs["welcome"], "friend": programs["referral_friend"],
               "reward": programs["referral_reward"], "manual": programs["manual"]})
    return shop_id


def cases(session: Any, shop_id: int) -> list[tuple[str, dict[str, Any]]]:
    """(name, list_codes keyword arguments) for the filters and combinations the page offers."""
    programs = {p.kind: p.id for p in session.scalars(select(Program).where(Program.shop_id == shop_id))}
    total = session.scalar(text("SELECT count(*) FROM issued_codes WHERE shop_id = :s"), {"s": shop_id})
    sample = session.scalar(select(IssuedCode.code).where(IssuedCode.shop_id == shop_id,
                                                          IssuedCode.code.like("WELCOME-%"))
                            .order_by(IssuedCode.id).offset(total // 3).limit(1))
    customer = session.scalar(text("SELECT shopify_customer_id FROM customers WHERE shop_id = :s ORDER BY id "
                                   "OFFSET 1234 LIMIT 1"), {"s": shop_id})
    middle = session.scalar(text("SELECT id FROM issued_codes WHERE shop_id = :s ORDER BY id OFFSET "
                                 "(SELECT count(*) / 2 FROM issued_codes WHERE shop_id = :s) LIMIT 1"), {"s": shop_id})
    now = datetime.now(UTC)
    last_week = {"issued_from": now - timedelta(days=7), "issued_to": now + timedelta(days=1)}
    year_ago = {"issued_from": now - timedelta(days=360), "issued_to": now - timedelta(days=353)}
    return [
        ("no filter", {}),
        ("no filter, deep page (before = the middle id)", {"before": middle}),
        ("status=attached", {"status": "attached"}),
        ("status=failed (0.5 %)", {"status": "failed"}),
        ("status=open", {"status": "open"}),
        ("status=expired (none in the last 30 days)", {"status": "expired"}),
        ("status=reserved (only in the last 30 days)", {"status": "reserved"}),
        ("status=failed, deep page", {"status": "failed", "before": middle}),
        ("program=welcome (70 %)", {"program_id": programs["welcome"]}),
        ("program=manual (2 %)", {"program_id": programs["manual"]}),
        ("customer id", {"shopify_customer_id": customer}),
        ("code exact", {"code": sample}),
        ("code prefix 'welcome-' (70 %)", {"code": "welcome-"}),
        ("code prefix 1 char after 'WELCOME-' (~2 %)", {"code": sample[:9]}),
        ("code prefix 3 chars after 'WELCOME-'", {"code": sample[:11]}),
        ("code prefix, no match", {"code": "ZZZ"}),
        ("issued last 7 days", last_week),
        ("issued a week a year ago", year_ago),
        ("status=failed + program=manual", {"status": "failed", "program_id": programs["manual"]}),
        ("status=redeemed + last 7 days", {"status": "redeemed", **last_week}),
        ("status=failed + a week a year ago", {"status": "failed", **year_ago}),
        ("program=manual + a week a year ago", {"program_id": programs["manual"], **year_ago}),
        ("code prefix + status=attached", {"code": sample[:11], "status": "attached"}),
        ("customer + status=redeemed", {"shopify_customer_id": customer, "status": "redeemed"}),
        ("everything", {"code": "welcome-", "status": "attached", "program_id": programs["welcome"], **last_week}),
    ]


def explain(db: Database, shop_id: int, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    captured: list[tuple[str, Any]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "FROM issued_codes JOIN programs" in statement:
            captured.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", grab)
    try:
        with db.session_scope() as session:
            started = time.perf_counter()
            rows = issuance.list_codes(session, shop_id, limit=PAGE, by_issue=True, **kwargs)
            elapsed = (time.perf_counter() - started) * 1000
    finally:
        event.remove(db.engine, "before_cursor_execute", grab)
    statement, parameters = captured[-1]
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(row[0] for row in cursor.fetchall())
    executed = float(re.search(r"Execution Time: ([0-9.]+) ms", plan).group(1))
    indexes = sorted(set(re.findall(r"(?:Index|Index Only) Scan(?: Backward)? using (\w+)", plan))
                     | {f"bitmap:{name}" for name in re.findall(r"Bitmap Index Scan on (\w+)", plan)})
    seq = "Seq Scan on issued_codes" in plan
    return {"case": name, "rows": len(rows), "call_ms": round(elapsed, 2), "execution_ms": executed,
            "indexes": indexes, "seq_scan": seq, "plan": plan}


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def export(database_url: str, redis_url: str, shop_id: int) -> dict[str, Any]:
    """GET /admin/codes.csv for the big shop through the app, consumed chunk by chunk."""
    from app import create_app
    from tests.conftest import make_settings
    from tests.helpers import session_token

    flask_app = create_app(make_settings(database_url=database_url, redis_url=redis_url))
    client = flask_app.test_client()
    client.get("/admin/codes", query_string={"id_token": session_token(BIG)})  # warm: imports, templates
    before = rss_kb()
    peak, lines, size = before, 0, 0
    started = time.perf_counter()
    answer = client.get("/admin/codes.csv", query_string={"id_token": session_token(BIG)}, buffered=False)
    assert answer.status_code == 200, answer.status_code
    for chunk in answer.response:
        lines += chunk.count(b"\n")
        size += len(chunk)
        if lines % 10_000 < 600:
            peak = max(peak, rss_kb())
    answer.close()
    seconds = time.perf_counter() - started
    peak = max(peak, rss_kb())
    flask_app.extensions["oncecode"].db.dispose()
    return {"rows": lines - 1, "bytes": size, "seconds": round(seconds, 1), "rss_before_mb": round(before / 1024, 1),
            "rss_peak_mb": round(peak / 1024, 1), "rss_growth_mb": round((peak - before) / 1024, 1),
            "shop_id": shop_id}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="measure on the shops an earlier run built (no build, nothing emptied)")
    add_service_options(parser)
    args = parser.parse_args()
    check_service_options(parser, args)
    with reused(args) if args.reuse else services(args) as (db, _redis, machine):
        started = time.perf_counter()
        if args.reuse:
            with db.session_scope() as session:
                ids = dict(session.execute(select(Shop.domain, Shop.id)).all())
            big, small = ids[BIG], ids[SMALL]
        else:
            big = build_shop(db, BIG, args.codes, args.codes // 2)
            build_shop(db, SECOND, args.codes // 5, args.codes // 10)
            small = build_shop(db, SMALL, 100, 50)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
            print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
        results = []
        with db.session_scope() as session:
            todo = [(shop, name, kwargs) for shop in (big,) for name, kwargs in cases(session, big)]
            todo += [(small, "small shop, no filter", {}), (small, "small shop, status=failed",
                                                             {"status": "failed"})]
        for shop, name, kwargs in todo:
            explain(db, shop, name, kwargs)  # warm the cache, as a page in use is
            result = explain(db, shop, name, kwargs)
            results.append(result)
            print(f"{result['execution_ms']:9.2f} ms  {result['call_ms']:9.2f} ms  {result['rows']:3d} rows  "
                  f"{'SEQ ' if result['seq_scan'] else ''}{','.join(result['indexes']):70s} {name}", flush=True)
        exported = None if args.skip_export else export(args.database_url, args.redis_url, big)
        if exported:
            print(f"export: {exported}", flush=True)
        out = RESULTS_DIR / "codes_page.json"
        out.write_text(json.dumps({"machine": machine, "codes": args.codes, "cases": results, "export": exported},
                                  indent=2, default=str))
        print(f"written to {out}")


if __name__ == "__main__":
    main()
