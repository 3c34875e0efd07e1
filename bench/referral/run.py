"""Referral benchmark: the friend landing ``GET /r/{token}`` against a bare Flask route, and Admin API points
per pooled friend code.

    .venv/bin/python -m bench.referral.run [--seconds 10] [--connections 32] [--pool-size 10000]

1. **Points.** Starts devstore, the app (gunicorn, as the Procfile does) and rq workers on loopback,
   installs the app on a devstore shop through the real OAuth flow, switches its referral programs on
   (``referral_reward`` and ``referral_friend``, pool size ``--pool-size``), queues the pool's top-up
   job as the landing does and waits until the pool holds ``--pool-size`` codes; prints the Admin API
   points devstore counted for it, per friend code, against the ~21 points of a customer-locked code.
   Then a customer signs up on the store and gets a referral link (``customers/create``), and the
   processes stop.
2. **Landing.** Starts two gunicorn servers with the Procfile's settings on the same database and
   Redis, the app (``app:create_app()``, production mode) and ``bench.referral.bare``, and drives each
   with ``--connections`` concurrent clients: the bare route, the landing with a fresh browser per
   request (each takes a new code from the pool), the landing with the same browser again (cookie
   present, same code). The friend program's landing caps are set to 0 (off) for this: 20 codes per
   link per day would stop the run after 20 requests. Prints requests per second, p50/p99 and the
   landing/bare ratios, and checks that every code handed out reached exactly one client.

Figures go to ``bench/results/``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.fernet import Fernet
from redis import Redis
from rq.job import JobStatus
from sqlalchemy import func, select, text

from app.codes import landing
from app.codes.pools import pool_status, set_pool_settings
from app.codes.programs import update_program
from app.config import ROOT
from app.db import Database
from app.models import Customer, PoolCode, Program, ReferralLink
from app.queues import job_status, pool_top_up_job_id
from bench.common import (
    RESULTS_DIR,
    Process,
    Server,
    _cpu_seconds,
    add_load_options,
    add_service_options,
    check_load_options,
    check_service_options,
    configured_worker_class,
    free_port,
    services,
    uninterrupted,
)
from bench.intake.load import figure
from bench.intake.run import app_environment, ratio
from bench.issuance.run import SHOP, World, answers, environment, installed, wait_for
from bench.reconcile.run import watched
from bench.referral.load import LandingResult, run_load

# A customer-locked code (one discount per code), measured by bench.issuance on 2026-12-02: 21.3 points
# with 4 workers, 23.7 with 2; the naive path (create, metafieldsSet, tagsAdd) spends 30.
PER_CUSTOMER_POINTS = 21.3
FILL_TIMEOUT = 900.0  # seconds for the pool to fill before the run is called failed
STALL_TIMEOUT = 120.0  # seconds without a code added before the fill is called stuck
T = TypeVar("T")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.referral.run", description=__doc__.split("\n\n")[0])
    add_load_options(parser, connections=32)
    parser.add_argument("--pool-size", type=int, default=10_000,
                        help="friend codes the top-up job creates on devstore (default 10000); the landing "
                             "takes its codes from them")
    parser.add_argument("--links", type=int, default=1,
                        help="referral links the clients open, client i the link i mod N (default 1: every landing "
                             "on one link)")
    parser.add_argument("--rq-workers", type=int, default=1,
                        help="rq worker processes while the pool fills (default 1: one top-up job runs at a time)")
    add_service_options(parser)
    args = parser.parse_args(argv)
    check_load_options(parser, args)
    if not (250 <= args.pool_size <= 100_000 and 1 <= args.rq_workers <= 8 and 1 <= args.links <= args.connections):
        parser.error("--pool-size must be in [250, 100000], --rq-workers in [1, 8] and --links in [1, --connections]")
    check_service_options(parser, args)
    return args


# --- part 1: the pool on devstore ------------------------------------------------------------------


def start(args: argparse.Namespace, stamp: str, token_key: str) -> tuple[World, dict[str, str]]:
    """devstore, the app (the Procfile's gunicorn, development mode: devstore's deliveries go to a loopback
    APP_URL, which production refuses) and the rq workers."""
    store_port, app_port = free_port(), free_port()
    store_url = f"http://127.0.0.1:{store_port}"
    env = environment(args, f"http://127.0.0.1:{app_port}", store_url) | {"TOKEN_ENCRYPTION_KEY": token_key}
    web_args = argparse.Namespace(workers=args.workers, worker_class=None, threads=1)
    log = RESULTS_DIR / f"referral-{stamp}"
    processes: list[Process] = []
    try:
        store = Process("devstore", [sys.executable, "-m", "devstore", "--port", str(store_port)], env,
                        log.with_name(log.name + "-devstore.log"))
        processes.append(store)
        app = Server("app", "app:create_app()", web_args, env, log.with_name(log.name + "-setup-app.log"),
                     port=app_port)
        processes.append(app)
        workers = [Process(f"worker-{n}", [sys.executable, "-m", "workers"], env,
                           log.with_name(f"{log.name}-worker-{n}.log")) for n in range(args.rq_workers)]
        processes += workers
        app.wait_ready()
        wait_for(lambda: answers(f"{store_url}/"), 30, "devstore")
        return World(app=app, store=store, store_url=store_url, workers=workers), env
    except BaseException:
        for process in processes:
            process.stop()
        raise


def install(world: World, db: Database, pool_size: int) -> tuple[int, int]:
    """OAuth as the merchant's browser does it, then the referral programs on as the merchant sets them:
    (shop id, referral_friend program id)."""
    shop_id = installed(world, db)
    with db.session_scope() as session:
        programs = {p.kind: p for p in session.scalars(select(Program).where(Program.shop_id == shop_id))}
        friend = programs["referral_friend"]
        update_program(session, shop_id, programs["referral_reward"].id, {"active": True})
        update_program(session, shop_id, friend.id, {"active": True})
        set_pool_settings(session, shop_id, friend.id, {"size": pool_size})
        # Off for the benchmark: a fresh browser per request would meet the per-link cap after 20 codes
        # and, from one address, the per-address cap after 5.
        landing.set_caps(session, friend, {"per_link_per_day": 0, "per_address_per_hour": 0})
        return shop_id, friend.id


def fill_pool(world: World, env: dict[str, str], db: Database, redis: Redis, shop_id: int, friend_id: int,
              size: int) -> dict[str, Any]:
    """Queue the top-up as the merchant does (``flask referrals top-up``; the landing and the minute's sweep
    queue the same job), wait until the pool is full and the job finished; what devstore counted for it."""
    store = world.control("GET", "")
    # Setup spent some points: let the bucket fill up again, then count from zero.
    time.sleep(world.control("GET", "/graphql_usage")["points"] / float(store["restore_rate"]) + 1)
    world.control("DELETE", "/graphql_usage")
    job_id = pool_top_up_job_id(shop_id, friend_id)
    started = time.monotonic()
    cpu_before = world.cpu_seconds()
    queued = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "referrals", "top-up", SHOP], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    if queued.returncode != 0 or not queued.stdout.startswith("top-up queued"):
        raise RuntimeError(f"flask referrals top-up: {queued.returncode} {queued.stdout}{queued.stderr}")
    deadline, last, last_change, last_print = time.monotonic() + FILL_TIMEOUT, -1, time.monotonic(), 0.0
    while True:
        world.check_running()
        with db.session_scope() as session:
            available = session.scalar(select(func.count()).select_from(PoolCode).where(
                PoolCode.shop_id == shop_id, PoolCode.program_id == friend_id, PoolCode.status == "available")) or 0
        status = job_status(redis, job_id)
        if available != last:
            last, last_change = available, time.monotonic()
        elif time.monotonic() - last_change > STALL_TIMEOUT:
            raise RuntimeError(f"no code added for {STALL_TIMEOUT:.0f} s ({available} available, job {status})\n"
                               f"{world.workers[0].log_tail(10)}")
        if status == JobStatus.FAILED:
            raise RuntimeError(f"the top-up job failed\n{world.workers[0].log_tail(20)}")
        if time.monotonic() - last_print > 5:
            print(f"  {available:,}/{size:,} codes available (job {status.value if status else None})", flush=True)
            last_print = time.monotonic()
        if available >= size and status == JobStatus.FINISHED:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pool was not full after {FILL_TIMEOUT:.0f} s: {available} codes")
        time.sleep(0.25)
    seconds = time.monotonic() - started
    cpu = {name: round(world.cpu_seconds()[name] - before, 2) for name, before in cpu_before.items()}
    usage = world.control("GET", "/graphql_usage")
    with db.session_scope() as session:
        status_now = pool_status(session, shop_id, friend_id)
        ours = set(session.scalars(select(PoolCode.code).where(PoolCode.shop_id == shop_id,
                                                               PoolCode.program_id == friend_id)))
    on_store = {c["code"].upper() for d in world.control("GET", "/discounts") for c in d["codes"]
                if "friend codes" in d.get("title", "")}
    creations = status_now["bulk_creations"]
    checks = {"available": status_now["available"], "pending": status_now["pending"],
              "failed_codes": status_now["failed"], "codes_on_store": len(on_store),
              "store_matches_pool": on_store == ours, "throttled_answers": usage["throttled"],
              "pool_counted_what_the_store_charged": status_now["points_spent"] == usage["points"]}
    checks["ok"] = (checks["available"] == size and checks["pending"] == 0 and checks["store_matches_pool"]
                    and len(on_store) == size + 1  # and the discount's own (anchor) code
                    and checks["pool_counted_what_the_store_charged"])
    return {
        "pool_size": size, "fill_seconds": round(seconds, 1), "requests": usage["requests"],
        "points": usage["points"], "points_per_code": round(usage["points"] / size, 4),
        "pool_points_spent": status_now["points_spent"], "bulk_creations": creations,
        # One discountCodeBasicCreate, one discountRedeemCodeBulkAdd per creation, the rest polls
        # (and reads of failed codes, when a creation reported failures).
        "polls_and_reads": usage["requests"] - 1 - creations["count"],
        "per_customer_points": PER_CUSTOMER_POINTS,
        "cpu_seconds": cpu, "checks": checks,
    }


def advocate_links(world: World, db: Database, shop_id: int, count: int) -> list[str]:
    """``count`` customers sign up on the store; with the referral program on, ``customers/create`` gives
    each a link (and writes it to their metafield). Their tokens."""
    ids = [world.control("POST", "/customers", json={"email": f"advocate{n}@example.com"})["id"]
           for n in range(count)]

    def tokens() -> list[str] | None:
        with db.session_scope() as session:
            found = list(session.scalars(select(ReferralLink.token)
                                         .join(Customer, Customer.id == ReferralLink.customer_id)
                                         .where(ReferralLink.shop_id == shop_id, ReferralLink.status == "active",
                                                Customer.shopify_customer_id.in_(ids))))
        return found if len(found) == count else None

    return wait_for(tokens, 120, "the advocates' referral links", world)


# --- part 2: the landing ---------------------------------------------------------------------------


def landing_environment(args: argparse.Namespace, token_key: str) -> dict[str, str]:
    """Production mode, every setting given (``bench.intake``'s), behind one trusted proxy hop so that each
    request's ``X-Forwarded-For`` is its visitor's address."""
    env = app_environment(args, "bench-secret-" + secrets.token_hex(16), token_key)
    env.update({"TRUSTED_PROXY_HOPS": "1", "APP_URL": "https://oncecode-bench.invalid"})
    return env


def postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``database`` (its process title names it;
    Linux /proc). The writer, checkpointer and WAL processes are shared with every database: left out."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if title.startswith("postgres:") and f" {database} " in title:
                found[int(proc.name)] = _cpu_seconds(int(proc.name))
        except OSError:  # gone meanwhile
            continue
    return found


def postgres_sessions(db: Database) -> int:
    """Sessions PostgreSQL has opened on the benchmark database so far (``pg_stat_database``, PostgreSQL 14+;
    its counters are flushed about once a second): connections the app's pools opened during a row."""
    with db.engine.connect() as connection:
        return int(connection.execute(text(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()")).scalar() or 0)


def postgres_cpu_since(database: str, before: dict[int, float]) -> float:
    """CPU the database's backends used since ``before`` (backends started meanwhile count whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in postgres_cpu(database).items())


def worker_class(args: argparse.Namespace) -> str:
    return args.worker_class or configured_worker_class()


def measure_landing(args: argparse.Namespace, db: Database, env: dict[str, str], stamp: str, paths: list[str]
                    ) -> tuple[list[LandingResult], dict[str, Any]]:
    """Start both servers, warm them up, measure bare, the landing for new browsers and for the same
    browser again; always stop them. Also what the warm-up handed out (for the checks)."""
    servers: dict[str, Server] = {}
    try:
        for name, target in (("bare", "bench.referral.bare:create_app()"), ("app", "app:create_app()")):
            servers[name] = Server(name, target, args, env, RESULTS_DIR / f"referral-{stamp}-{name}.log")
        for server in servers.values():
            server.wait_ready()
        print(f"servers: {', '.join(f'{s.name} on :{s.port}' for s in servers.values())} (gunicorn --config "
              f"app/gunicorn_conf.py --workers {args.workers} --worker-class {worker_class(args)} "
              f"--threads {args.threads}); {args.connections} connections on {args.links} link(s), "
              f"{args.warmup:g} s warm-up + {args.seconds:g} s each", flush=True)
        warm: dict[str, LandingResult] = {}
        for name, server in servers.items():
            warm[name] = run_load(name, server.port, paths, args.warmup, args.connections)
            if args.warmup and warm[name].ok == 0:
                raise RuntimeError(f"{name}: no 302 during warm-up ({dict(warm[name].statuses)}, "
                                   f"{warm[name].failures} failures)\n{server.log_tail()}")
        results = []
        for label, name, same in (("bare", "bare", False), ("new", "app", False), ("again", "app", True)):
            server = servers[name]
            cpu_before, pg_before, machine = server.cpu_seconds(), postgres_cpu(args.database.database), {}
            sessions_before = postgres_sessions(db)
            with watched(machine):  # other work on the machine shows here: the benchmark cannot tell it apart
                result = run_load(label, server.port, paths, args.seconds, args.connections, same_browser=same)
            result.server_cpu = server.cpu_seconds() - cpu_before
            machine["postgres_cpu_ms_per_request"] = figure(result.cpu_ms_per_request(
                postgres_cpu_since(args.database.database, pg_before)), 3)
            time.sleep(1.1)  # PostgreSQL flushes its session counters about once a second
            machine["postgres_sessions_opened"] = postgres_sessions(db) - sessions_before
            result.machine = machine
            results.append(result)
        return results, {"warm_codes": warm["app"].codes, "warm_responses": len(warm["app"].latencies)}
    finally:
        with uninterrupted():
            for server in servers.values():
                server.stop()


def landing_checks(db: Database, shop_id: int, friend_id: int, tokens: list[str], results: list[LandingResult],
                   warm: dict[str, Any]) -> dict[str, Any]:
    """Every code handed out reached exactly one client; the same browser always got its own code back;
    every landing was counted as a click."""
    _, new, again = results
    seen = warm["warm_codes"] + new.codes + again.first_visits
    with db.session_scope() as session:
        links = session.execute(select(ReferralLink.id, ReferralLink.clicks)
                                .where(ReferralLink.shop_id == shop_id, ReferralLink.token.in_(tokens))).all()
        clicks = sum(n for _, n in links)
        handed = list(session.scalars(select(PoolCode.code).where(
            PoolCode.shop_id == shop_id, PoolCode.program_id == friend_id, PoolCode.status == "handed_out")))
        from_link = session.scalar(select(func.count()).select_from(PoolCode).where(
            PoolCode.shop_id == shop_id, PoolCode.link_id.in_([link_id for link_id, _ in links]))) or 0
        left = session.scalar(select(func.count()).select_from(PoolCode).where(
            PoolCode.shop_id == shop_id, PoolCode.program_id == friend_id, PoolCode.status == "available")) or 0
    answered = warm["warm_responses"] + len(new.latencies) + len(again.first_visits) + len(again.latencies)
    checks = {
        "codes_handed_out": len(handed), "codes_seen_by_clients": len(seen),
        "distinct_codes_seen": len(set(seen)), "handed_out_equals_seen": Counter(handed) == Counter(seen),
        "handed_out_from_the_link": from_link,
        "same_browser_other_code": again.other_code,
        "same_browser_new_codes": len(set(again.codes) - set(again.first_visits)),
        "clicks": clicks, "landings_answered": answered, "codes_left_in_pool": left,
    }
    checks["ok"] = (checks["handed_out_equals_seen"] and len(set(seen)) == len(seen) == from_link
                    and again.other_code == 0 and checks["same_browser_new_codes"] == 0 and clicks == answered)
    return checks


# --- report ----------------------------------------------------------------------------------------


def print_table(results: list[LandingResult]) -> None:
    names = {"bare": "bare", "new": "landing, new browser", "again": "landing, same browser"}
    print(f"\n{'target':<24}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
          f"{'server cpu ms/req':>19}{'postgres cpu ms/req':>21}{'client cpu ms/req':>19}{'load before':>13}"
          f"{'busy cores':>12}{'pg sessions':>13}")
    for r in results:
        print(f"{names[r.target]:<24}{r.requests:>10}{r.rate:>10.1f}{r.percentile_ms(50):>10.2f}"
              f"{r.percentile_ms(99):>10.2f}{r.errors:>8}{r.cpu_ms_per_request(r.server_cpu):>19.3f}"
              f"{r.machine['postgres_cpu_ms_per_request']:>21.3f}"
              f"{r.cpu_ms_per_request(r.client_cpu):>19.3f}{r.machine['loadavg_before'][0]:>13.2f}"  # type: ignore[index]
              f"{r.machine['machine_busy_cores']:>12.2f}{r.machine['postgres_sessions_opened']:>13}")


def report(args: argparse.Namespace, machine: dict[str, object], points: dict[str, Any],
           results: list[LandingResult], checks: dict[str, Any], stamp: str) -> int:
    bare, new, again = results
    print(f"\nfriend code pool of {points['pool_size']:,} on devstore: {points['points']} Admin API points in "
          f"{points['requests']} requests ({points['bulk_creations']['count']} bulk adds, "
          f"{points['polls_and_reads']} polls), filled in {points['fill_seconds']} s")
    per_code = points["points_per_code"]
    print(f"points per friend code: {per_code:.3f} (a customer-locked code: ~{PER_CUSTOMER_POINTS}, "
          f"x{PER_CUSTOMER_POINTS / per_code:,.0f}); pool checks: {points['checks']}")
    print_table(results)
    ratios = {}
    for result in (new, again):
        ratios[result.target] = {"req_per_s": ratio(result.rate, bare.rate),
                                 "p99": ratio(result.percentile_ms(99), bare.percentile_ms(99))}
        print(f"landing ({'new browser' if result.target == 'new' else 'same browser'})/bare: "
              f"req/s x{ratios[result.target]['req_per_s']:.3f}, p99 x{ratios[result.target]['p99']:.2f}")
    print("landing caps set to 0 (off) for the run: per link per day and per address per hour")
    print(f"landing checks: {checks}")
    errors = sum(r.errors for r in results)
    if any(r.statuses.get(200) for r in (new, again)):
        print("some landings answered 200 (the friendly page): the pool ran out? use a larger --pool-size "
              "or fewer --seconds")
    out = RESULTS_DIR / f"referral-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "referral", "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"seconds": args.seconds, "warmup": args.warmup, "connections": args.connections,
                     "workers": args.workers, "worker_class": worker_class(args), "threads": args.threads,
                     "log_level": args.log_level, "pool_size": args.pool_size, "rq_workers": args.rq_workers,
                     "links": args.links, "landing_caps": "off (0)", "trusted_proxy_hops": 1,
                     "database": args.database.render_as_string(), "redis": args.redis_url},
        "machine": machine,
        "pool": points,
        "landing": {r.target: r.summary() for r in results},
        "ratios": {target: {name: figure(value, 4) for name, value in pair.items()} for target, pair in ratios.items()},
        "landing_checks": checks,
    }, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 0 if points["checks"]["ok"] and checks["ok"] and errors == 0 and not math.isnan(per_code) else 1


# --- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    token_key = Fernet.generate_key().decode()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with services(args) as (db, redis, machine):
        world, env = start(args, stamp, token_key)
        try:
            shop_id, friend_id = install(world, db, args.pool_size)
            print(f"installed on {SHOP}; referral programs on; filling a pool of {args.pool_size:,} friend codes "
                  f"with {args.rq_workers} rq worker(s)", flush=True)
            points = fill_pool(world, env, db, redis, shop_id, friend_id, args.pool_size)
            tokens = advocate_links(world, db, shop_id, args.links)
        finally:
            with uninterrupted():
                world.stop()
        machine["loadavg_before_landing"] = [round(x, 2) for x in os.getloadavg()]
        results, warm = measure_landing(args, db, landing_environment(args, token_key), stamp,
                                        [f"/r/{token}" for token in tokens])
        checks = landing_checks(db, shop_id, friend_id, tokens, results, warm)
    return report(args, machine, points, results, checks, stamp)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; processes stopped", file=sys.stderr)
        sys.exit(130)
