"""Issuance benchmark: welcome codes for a burst of signups on one devstore shop, on Shopify's standard plan.

    .venv/bin/python -m bench.issuance.run [--signups 300] [--workers 2]

Starts devstore, the app (gunicorn, as the Procfile does) and rq worker processes on loopback,
installs the app on a devstore shop through the real OAuth flow, switches its welcome program on,
then creates ``--signups`` customers on the store as fast as it can. devstore delivers each
``customers/create`` to the app, which reserves the customer's code and issues it through
devstore's Admin GraphQL, paced by its standard-plan bucket (2,000 points, 100 a second). When
every code is attached it reports codes per second as a fraction of what the bucket allowed, the
Admin API points each code cost, and p50/p99 from signup to attached code, and checks that no code
failed and none was created twice. Figures go to ``bench/results/``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import requests
from cryptography.fernet import Fernet
from redis import Redis
from rq.registry import FailedJobRegistry
from sqlalchemy import func, select

from app.codes.programs import update_program
from app.config import DEFAULT_SCOPES, ROOT
from app.db import Database
from app.models import Customer, IssuedCode, Program, Shop
from bench.common import (
    RESULTS_DIR,
    Process,
    Server,
    add_service_options,
    check_service_options,
    free_port,
    services,
    uninterrupted,
)

SHOP = "demo.myshopify.com"
T = TypeVar("T")
NAIVE_POINTS = 30  # create + metafieldsSet + tagsAdd, one mutation each per code
SETTLE_TIMEOUT = 600.0  # seconds for every code to be attached before the run is called failed
STALL_TIMEOUT = 60.0  # seconds without any code changing status before the run is called stuck


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.issuance.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--signups", type=int, default=300, help="customers created in the burst (default 300)")
    parser.add_argument("--workers", type=int, default=2, help="rq worker processes (default 2)")
    parser.add_argument("--clients", type=int, default=8,
                        help="threads creating customers on devstore at once (default 8)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers for the app (default 2)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="signups per second, paced; 0 (default) creates them as fast as the clients can")
    add_service_options(parser)
    args = parser.parse_args(argv)
    if args.rate < 0:
        parser.error("--rate must be 0 (as fast as possible) or a number of signups per second")
    if not (1 <= args.signups <= 20_000 and 1 <= args.workers <= 16 and 1 <= args.clients <= 64
            and 1 <= args.web_workers <= 16):
        parser.error("--signups must be in [1, 20000], --workers in [1, 16], --clients in [1, 64], "
                     "--web-workers in [1, 16]")
    check_service_options(parser, args)
    return args


def environment(args: argparse.Namespace, app_url: str, store_url: str) -> dict[str, str]:
    """Every setting the app reads, given explicitly; the same client id and secret for devstore.

    Development mode: production insists on an https APP_URL, which devstore's deliveries to
    loopback cannot have. Nothing else differs (every secret is given, none read from instance/).
    """
    env = dict(os.environ)
    env.update({
        "ONCECODE_ENV": "development", "SHOPIFY_API_KEY": "bench-client-id",
        "SHOPIFY_API_SECRET": "bench-secret-" + secrets.token_hex(16), "SHOPIFY_API_SECRET_PREVIOUS": "",
        "SHOPIFY_SCOPES": DEFAULT_SCOPES, "SHOPIFY_API_VERSION": "2026-10",
        "SHOPIFY_STORE_BASE_URL": f"{store_url}/stores/{{shop}}", "APP_URL": app_url,
        "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url,
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(), "SECRET_KEY": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
        "DEVSTORE_SHOPS": SHOP, "DEVSTORE_AUTO_APPROVE": "1", "DEVSTORE_DATABASE_URL": "sqlite://",
        "DEVSTORE_RETRY_BASE_SECONDS": "1",
    })
    return env


# --- the world ----------------------------------------------------------------------------------


@dataclass
class World:
    app: Server
    store: Process
    store_url: str
    workers: list[Process]

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"

    def control(self, method: str, path: str, **kwargs: object) -> dict:
        response = requests.request(method, f"{self.store_url}/_devstore/stores/{SHOP}{path}", timeout=30,
                                    **kwargs)  # type: ignore[arg-type]
        response.raise_for_status()
        return response.json()

    def check_running(self) -> None:
        for process in (self.app, self.store, *self.workers):
            process.check_running()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU used so far by devstore, the web app and the workers (each with its children)."""
        return {"devstore": self.store.cpu_seconds(), "web": self.app.cpu_seconds(),
                "workers": sum(worker.cpu_seconds() for worker in self.workers)}

    def stop(self) -> None:
        for process in (*self.workers, self.app, self.store):
            process.stop()


def start(args: argparse.Namespace, stamp: str) -> World:
    store_port = free_port()
    store_url = f"http://127.0.0.1:{store_port}"
    web_args = argparse.Namespace(workers=args.web_workers, worker_class=None, threads=1)  # the Procfile's class
    log = RESULTS_DIR / f"issuance-{stamp}"
    processes: list[Process] = []
    try:
        # The app must know its own address before it starts: it subscribes devstore's webhooks to it.
        app_port = free_port()
        env = environment(args, f"http://127.0.0.1:{app_port}", store_url)
        store = Process("devstore", [sys.executable, "-m", "devstore", "--port", str(store_port)], env,
                        log.with_name(log.name + "-devstore.log"))
        processes.append(store)
        app = Server("app", "app:create_app()", web_args, env, log.with_name(log.name + "-app.log"), port=app_port)
        processes.append(app)
        workers = [Process(f"worker-{n}", [sys.executable, "-m", "workers"], env,
                           log.with_name(f"{log.name}-worker-{n}.log")) for n in range(args.workers)]
        processes += workers
        app.wait_ready()
        wait_for(lambda: answers(f"{store_url}/"), 30, "devstore")
        return World(app=app, store=store, store_url=store_url, workers=workers)
    except BaseException:
        for process in processes:
            process.stop()
        raise


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def wait_for(check: Callable[[], T | None], timeout: float, what: str, world: World | None = None) -> T:
    """``check()``'s first truthy value, polled every 0.2 s; RuntimeError naming ``what`` after ``timeout``
    (or as soon as one of ``world``'s processes has stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if world is not None:
            world.check_running()
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def installed(world: World, db: Database) -> int:
    """OAuth as the merchant's browser does it (devstore approves at once), then the shop's setup; its id."""
    page = requests.Session().get(f"{world.app_url}/auth", params={"shop": SHOP}, timeout=30)
    if page.status_code != 200 or "OnceCode is installed" not in page.text:
        raise RuntimeError(f"install failed: {page.status_code} {page.text[:300]}")

    def set_up() -> int | None:
        with db.session_scope() as session:
            shop = session.scalar(select(Shop).where(Shop.domain == SHOP))
            if shop is not None and shop.setup_error:
                raise RuntimeError(f"shop setup failed: {shop.setup_error}")
            return shop.id if shop is not None and shop.setup_completed_at else None

    return wait_for(set_up, 60, "the shop's setup (webhook subscriptions, programs, definitions)", world)


def install(world: World, db: Database) -> int:
    """The shop installed, its welcome program switched on as the merchant does."""
    shop_id = installed(world, db)
    with db.session_scope() as session:
        welcome = session.scalars(select(Program).where(Program.shop_id == shop_id, Program.kind == "welcome")).one()
        update_program(session, shop_id, welcome.id, {"active": True})  # the merchant switches it on
    return shop_id


# --- the burst ----------------------------------------------------------------------------------


def burst(world: World, signups: int, clients: int, rate: float) -> tuple[dict[int, datetime], float]:
    """Create the customers; (Shopify customer id → when its signup was answered, wall seconds taken).

    With a ``rate``, signup n is not sent before n / rate seconds after the first.
    """
    started = time.monotonic()

    def sign_up(n: int) -> tuple[int, datetime]:
        if rate:
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
        customer = world.control("POST", "/customers", json={"email": f"bench{n}@example.com"})
        return customer["id"], datetime.now(UTC)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        signed = dict(pool.map(sign_up, range(signups)))
    return signed, time.monotonic() - started


def statuses(db: Database, shop_id: int) -> dict[str, int]:
    with db.session_scope() as session:
        return dict(session.execute(select(IssuedCode.status, func.count()).where(IssuedCode.shop_id == shop_id)
                                    .group_by(IssuedCode.status)).all())


def wait_attached(world: World, db: Database, shop_id: int, signups: int) -> dict[str, int]:
    """Until every signup's code is attached (or failed), printing progress every few seconds.

    Fails when nothing moves for ``STALL_TIMEOUT`` seconds, with what the workers logged last.
    """
    deadline, last_print, last_change, last = time.monotonic() + SETTLE_TIMEOUT, 0.0, time.monotonic(), {}
    while True:
        world.check_running()
        found = statuses(db, shop_id)
        if found != last:
            last, last_change = found, time.monotonic()
        elif time.monotonic() - last_change > STALL_TIMEOUT:
            raise RuntimeError(f"no code moved for {STALL_TIMEOUT:.0f} s: {found}\n"
                               f"{world.workers[0].log_tail(5)}")
        done = found.get("attached", 0) + found.get("failed", 0)
        if time.monotonic() - last_print > 5 or done >= signups:
            print(f"  {found.get('attached', 0)}/{signups} attached, {found.get('failed', 0)} failed, "
                  f"{found.get('reserved', 0) + found.get('created', 0)} on the way", flush=True)
            last_print = time.monotonic()
        if done >= signups:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"codes still not attached after {SETTLE_TIMEOUT:.0f} s: {found}")
        time.sleep(0.25)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def measure(args: argparse.Namespace, world: World, db: Database, redis: Redis) -> dict[str, object]:
    shop_id = install(world, db)
    store = world.control("GET", "")
    size, rate = float(store["bucket_size"]), float(store["restore_rate"])
    # Setup spent some points: let the bucket fill up again so that the burst starts where a shop's would.
    time.sleep(world.control("GET", "/graphql_usage")["points"] / rate + 1)
    world.control("DELETE", "/graphql_usage")
    pace = f"{args.rate:g}/s" if args.rate else "as fast as they go"
    print(f"installed; {args.signups} signups ({pace}) from {args.clients} clients against a {size:.0f}-point bucket "
          f"restoring {rate:.0f}/s, {args.workers} workers", flush=True)

    cpu_before = world.cpu_seconds()
    signed, signup_seconds = burst(world, args.signups, args.clients, args.rate)
    first_signup = min(signed.values())
    found = wait_attached(world, db, shop_id, args.signups)
    cpu = {name: round(world.cpu_seconds()[name] - before, 2) for name, before in cpu_before.items()}

    usage = world.control("GET", "/graphql_usage")
    discounts = world.control("GET", "/discounts")
    with db.session_scope() as session:
        rows = session.execute(select(IssuedCode.code, IssuedCode.attached_at, Customer.shopify_customer_id)
                               .join(Customer, Customer.id == IssuedCode.customer_id)
                               .where(IssuedCode.shop_id == shop_id)).all()
    attached = [(code, at, customer) for code, at, customer in rows if at is not None]
    elapsed = (max(at for _, at, _ in attached) - first_signup).total_seconds() if attached else math.nan
    latencies = [(at - signed[customer]).total_seconds() for _, at, customer in attached if customer in signed]
    points_per_code = usage["points"] / len(attached) if attached else math.nan
    allowed_points = size + rate * elapsed  # a full bucket, then the restore rate, over the run
    ceiling = allowed_points / points_per_code
    store_codes = [c["code"].upper() for d in discounts for c in d["codes"]]
    checks = {
        "codes_attached": len(attached), "failed": found.get("failed", 0),
        "discounts_on_store": len(discounts), "distinct_codes": len(set(store_codes)),
        "codes_per_customer_max": max((list(c for _, _, c in rows).count(x) for x in signed), default=0),
        "throttled_answers": usage["throttled"], "failed_jobs": FailedJobRegistry("default", connection=redis).count,
    }
    checks["ok"] = (checks["codes_attached"] == checks["discounts_on_store"] == checks["distinct_codes"]
                    == args.signups and checks["failed"] == 0 and checks["codes_per_customer_max"] == 1
                    and checks["failed_jobs"] == 0)
    return {
        "signups": args.signups, "signup_seconds": round(signup_seconds, 2), "elapsed_seconds": round(elapsed, 2),
        "codes_per_second": round(len(attached) / elapsed, 2),
        "bucket": {"size": size, "restore_rate": rate},
        "admin_api": {"requests": usage["requests"], "points": usage["points"],
                      "points_per_code": round(points_per_code, 2),
                      "requests_per_code": round(usage["requests"] / len(attached), 2)},
        "ceiling_codes": round(ceiling, 1), "fraction_of_ceiling": round(len(attached) / ceiling, 3),
        "steady_ceiling_codes_per_second": round(rate / points_per_code, 2),
        "naive_steady_ceiling_codes_per_second": round(rate / NAIVE_POINTS, 2),
        "latency_seconds": {"p50": round(percentile(latencies, 50), 2), "p90": round(percentile(latencies, 90), 2),
                            "p99": round(percentile(latencies, 99), 2), "max": round(max(latencies), 2)},
        "cpu_seconds": cpu,
        "cpu_ms_per_code": {name: round(seconds * 1000 / args.signups, 1) for name, seconds in cpu.items()},
        "checks": checks,
    }


def report(results: dict[str, object], machine: dict[str, object], args: argparse.Namespace, stamp: str) -> int:
    api, latency, checks = results["admin_api"], results["latency_seconds"], results["checks"]  # type: ignore[index]
    print(f"\n{results['signups']} codes in {results['elapsed_seconds']} s from the first signup: "
          f"{results['codes_per_second']} codes/s")
    print(f"Admin API: {api['points_per_code']} points and {api['requests_per_code']} requests per code "  # type: ignore[index]
          f"(naive path: {NAIVE_POINTS} points)")
    print(f"the bucket allowed {results['ceiling_codes']} codes over the run at that cost: "
          f"{results['fraction_of_ceiling']:.1%} of the ceiling "  # type: ignore[str-format]
          f"(steady state {results['steady_ceiling_codes_per_second']} codes/s, naive "
          f"{results['naive_steady_ceiling_codes_per_second']})")
    print(f"signup to attached code: p50 {latency['p50']} s, p90 {latency['p90']} s, p99 {latency['p99']} s, "  # type: ignore[index]
          f"max {latency['max']} s")  # type: ignore[index]
    print(f"CPU per code (ms): {results['cpu_ms_per_code']}")
    print(f"checks: {checks}")
    out = RESULTS_DIR / f"issuance-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "issuance", "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"signups": args.signups, "rate": args.rate, "workers": args.workers, "clients": args.clients,
                     "web_workers": args.web_workers, "database": args.database.render_as_string(),
                     "redis": args.redis_url},
        "machine": machine, "results": results,
    }, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 0 if checks["ok"] else 1  # type: ignore[index]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with services(args) as (db, redis, machine):
        world = start(args, stamp)
        try:
            results = measure(args, world, db, redis)
        finally:
            with uninterrupted():
                world.stop()
    return report(results, machine, args, stamp)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; processes stopped", file=sys.stderr)
        sys.exit(130)
