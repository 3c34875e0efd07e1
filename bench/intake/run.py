"""Webhook intake benchmark: signed ``POST /webhooks`` on the real app, side by side with a bare Flask route.

    .venv/bin/python -m bench.intake.run [--seconds 10] [--connections 16] [--workers 2]

Starts two gunicorn servers on free loopback ports with the Procfile's settings (``app/gunicorn_conf.py``) —
the real app (``app:create_app()``, on PostgreSQL and Redis) and ``bench.intake.bare`` — warms both up, then drives
each in turn with the same signed requests and prints requests per second, p50/p99 latency and the
app/bare ratios. Afterwards it checks that every 200 the app returned left one ``webhook_events`` row
and one job in the ``webhooks`` queue, and writes the figures to ``bench/results/``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet
from redis import Redis
from rq import Queue
from rq.rate_limit import RateLimitRegistry
from sqlalchemy import func, select, text

from app.config import DEFAULT_SCOPES, ROOT
from app.db import Database, utcnow
from app.models import Shop, WebhookEvent
from app.queues import webhook_rate_limit
from app.shopify.oauth import TokenGrant
from app.shopify.tokens import TokenCipher, store_grant
from bench.common import (
    RESULTS_DIR,
    Server,
    add_load_options,
    add_service_options,
    check_load_options,
    check_service_options,
    configured_worker_class,
    services,
    uninterrupted,
)
from bench.intake.load import API_VERSION, SHOP, LoadResult, WebhookRequests, figure, run_load


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.intake.run", description=__doc__.split("\n\n")[0])
    add_load_options(parser, connections=16)
    add_service_options(parser)
    args = parser.parse_args(argv)
    check_load_options(parser, args)
    check_service_options(parser, args)
    return args


# --- database and Redis -------------------------------------------------------------------------


def install_shop(db: Database, token_key: str) -> None:
    """Install the one shop the requests come from (so events are queued, not ignored)."""
    now = utcnow()
    with db.session_scope() as session:
        shop = Shop(domain=SHOP, api_version=API_VERSION, settings={},
                    installed_at=now - timedelta(minutes=10), setup_completed_at=now - timedelta(minutes=10))
        store_grant(shop, TokenGrant(access_token="shpat_bench_not_a_real_token", scopes=("read_customers",),
                                     expires_at=None, refresh_token=None, refresh_token_expires_at=None),
                    TokenCipher((token_key,)))
        session.add(shop)


def clear_intake(db: Database, redis: Redis) -> None:
    """Forget what the warm-up recorded and queued, so the check counts the measured run only."""
    with db.session_scope() as session:
        session.execute(text(f"TRUNCATE {WebhookEvent.__tablename__} RESTART IDENTITY"))
    redis.flushdb()


def intake_counts(db: Database, redis: Redis) -> tuple[int, int, int]:
    """(rows in webhook_events, of which pending, jobs waiting: in the ``webhooks`` queue or, beyond the
    shop's share of it, in its rate-limit registry)."""
    with db.session_scope() as session:
        recorded = session.scalar(select(func.count()).select_from(WebhookEvent)) or 0
        pending = session.scalar(select(func.count()).where(WebhookEvent.status == "pending")) or 0
    waiting = RateLimitRegistry(webhook_rate_limit(SHOP).key, redis).get_rate_limited_job_count()
    return recorded, pending, Queue("webhooks", connection=redis).count + waiting


# --- servers ------------------------------------------------------------------------------------


def app_environment(args: argparse.Namespace, api_secret: str, token_key: str) -> dict[str, str]:
    """Every setting app/config.py reads, set explicitly (so a .env cannot change them); production mode.

    Production, not test: LOG_LEVEL is applied only outside test mode, the settings are validated as
    in a deployment, and no development secrets are read from instance/.
    """
    env = dict(os.environ)
    env.update({
        "ONCECODE_ENV": "production",
        "SHOPIFY_API_KEY": "bench-client-id",
        "SHOPIFY_API_SECRET": api_secret,
        "SHOPIFY_API_SECRET_PREVIOUS": "",  # present but empty: one secret to try, and .env may not add one
        "SHOPIFY_SCOPES": DEFAULT_SCOPES,
        "SHOPIFY_API_VERSION": API_VERSION,
        "SHOPIFY_STORE_BASE_URL": "https://{shop}",
        "WEBHOOK_MAX_BYTES": str(4 * 1024 * 1024),
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "TOKEN_ENCRYPTION_KEY": token_key,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "APP_URL": "https://oncecode-bench.invalid",
        "LOG_LEVEL": args.log_level,
        "PYTHONUNBUFFERED": "1",
    })
    return env


def worker_class(args: argparse.Namespace) -> str:
    """The worker class both servers run: the one asked for, else the Procfile's."""
    return args.worker_class or configured_worker_class()


# --- report -------------------------------------------------------------------------------------


def print_table(results: list[LoadResult]) -> None:
    print(f"\n{'target':<8}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
          f"{'server cpu ms/req':>19}{'client cpu ms/req':>19}")
    for r in results:
        print(f"{r.target:<8}{r.requests:>10}{r.rate:>10.1f}{r.percentile_ms(50):>10.2f}"
              f"{r.percentile_ms(99):>10.2f}{r.errors:>8}{r.cpu_ms_per_request(r.server_cpu):>19.3f}"
              f"{r.cpu_ms_per_request(r.client_cpu):>19.3f}")


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    api_secret = "bench-secret-" + secrets.token_hex(16)
    token_key = Fernet.generate_key().decode()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with services(args) as (db, redis, machine):
        install_shop(db, token_key)
        requests = WebhookRequests(api_secret)
        results, counts = measure(args, requests, app_environment(args, api_secret, token_key), stamp, db, redis)
    return report(args, requests, machine, results, counts, stamp)


def measure(args: argparse.Namespace, requests: WebhookRequests, env: dict[str, str], stamp: str,
            db: Database, redis: Redis) -> tuple[list[LoadResult], tuple[int, int, int]]:
    """Start both servers, warm them up, measure bare then app, count what the app recorded; always stop them."""
    servers: list[Server] = []
    try:
        for name, target in (("bare", "bench.intake.bare:create_app()"), ("app", "app:create_app()")):
            servers.append(Server(name, target, args, env, RESULTS_DIR / f"intake-{stamp}-{name}.log"))
        for server in servers:
            server.wait_ready()
        print(f"servers: {', '.join(f'{s.name} on :{s.port}' for s in servers)} (gunicorn --config "
              f"app/gunicorn_conf.py --workers {args.workers} --worker-class {worker_class(args)} "
              f"--threads {args.threads}); {args.connections} connections, "
              f"{args.warmup:g} s warm-up + {args.seconds:g} s each", flush=True)

        for server in servers:
            warm = run_load(server.name, server.port, requests, args.warmup, args.connections)
            if args.warmup and warm.ok == 0:
                raise RuntimeError(f"{server.name}: no 200 during warm-up ({dict(warm.statuses)}, "
                                   f"{warm.failures} failures)\n{server.log_tail()}")
        clear_intake(db, redis)

        results = []
        for server in servers:
            cpu_before = server.cpu_seconds()
            result = run_load(server.name, server.port, requests, args.seconds, args.connections)
            result.server_cpu = server.cpu_seconds() - cpu_before
            results.append(result)
        return results, intake_counts(db, redis)
    finally:
        with uninterrupted():
            for server in servers:
                server.stop()


def report(args: argparse.Namespace, requests: WebhookRequests, machine: dict[str, object],
           results: list[LoadResult], counts: tuple[int, int, int], stamp: str) -> int:
    """Print the table, the ratios and the intake check; write the JSON. 1 when anything failed."""
    bare_result, app_result = results
    recorded, pending, queued = counts
    print_table(results)
    rate_ratio = ratio(app_result.rate, bare_result.rate)
    p99_ratio = ratio(app_result.percentile_ms(99), bare_result.percentile_ms(99))
    print(f"app/bare: req/s x{rate_ratio:.3f}, p99 x{p99_ratio:.2f}")
    consistent = recorded == pending == queued == app_result.ok
    print(f"recorded: {recorded}, queued: {queued} (app 200s: {app_result.ok}) "
          f"{'OK' if consistent else 'MISMATCH'}")

    out = RESULTS_DIR / f"intake-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "intake", "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"seconds": args.seconds, "warmup": args.warmup, "connections": args.connections,
                     "workers": args.workers, "worker_class": worker_class(args),
                     "threads": args.threads, "log_level": args.log_level,
                     "body_bytes": len(requests.body), "database": args.database.render_as_string(),
                     "redis": args.redis_url},
        "machine": machine,
        "results": {r.target: r.summary() for r in results},
        "ratios": {"req_per_s_app_over_bare": figure(rate_ratio, 4), "p99_app_over_bare": figure(p99_ratio, 3)},
        "intake_check": {"app_200s": app_result.ok, "recorded": recorded, "pending": pending, "queued": queued,
                         "consistent": consistent},
    }, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 0 if consistent and app_result.errors == 0 and bare_result.errors == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
