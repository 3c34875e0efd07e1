"""devstore's configuration and state handle, shared by its blueprints, GraphQL layer and deliveries."""

from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import sqlite3
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from app.config import ROOT
from devstore.models import Base, Store

log = logging.getLogger(__name__)
_empty_tables_lock = threading.Lock()

DEFAULT_SHOPS = ("demo.myshopify.com", "other.myshopify.com")
APP_CONFIG = ROOT / "shopify.app.toml"


def _app_toml(app_config: Path = APP_CONFIG) -> dict[str, Any]:
    try:
        return tomllib.loads(app_config.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def toml_scopes() -> str:
    """``[access_scopes] scopes`` of shopify.app.toml: what Shopify grants at a managed installation."""
    scopes = str((_app_toml().get("access_scopes") or {}).get("scopes") or "")
    return ",".join(s.strip() for s in scopes.split(",") if s.strip())


def toml_handle() -> str:
    """The app's ``handle`` (its admin URL slug, ``/store/<name>/apps/<handle>``), else its name as a slug."""
    config = _app_toml()
    handle = str(config.get("handle") or "")
    return handle or re.sub(r"[^a-z0-9]+", "-", str(config.get("name") or "app").lower()).strip("-") or "app"


def toml_name() -> str:
    return str(_app_toml().get("name") or "App")


def toml_home_path() -> str:
    """The path of ``application_url`` (the app home), without its trailing slash: "" for "https://x/"."""
    return urlsplit(str(_app_toml().get("application_url") or "")).path.rstrip("/")


def toml_legacy_install() -> bool:
    """``use_legacy_install_flow``: Shopify installs through the app's OAuth instead of managing it."""
    return bool((_app_toml().get("access_scopes") or {}).get("use_legacy_install_flow", False))


@dataclass(frozen=True)
class DevstoreConfig:
    """Who the store serves (the app's client id and secret) and where it keeps its state."""

    api_key: str
    api_secret: str = field(repr=False)
    database_url: str = "sqlite://"  # memory; `make run` passes a file under instance/
    api_versions: tuple[str, ...] = ("2026-01", "2026-04", "2026-07", "2026-10")
    shops: tuple[str, ...] = DEFAULT_SHOPS
    auto_approve: bool = False  # skip the approve page (scripts and tests)
    deliver_webhooks: bool = True  # background delivery thread
    # Webhook retries: Shopify makes 8 retries with exponential back-off; the first waits this long.
    retry_base_seconds: float = 5.0
    max_delivery_retries: int = 8
    # Bulk mutations (``discountCodeBulkDelete``) return a job that runs this long after it was started.
    job_seconds: float = 1.0
    # The app's proxy (``[app_proxy]`` of shopify.app.toml): /stores/<shop>/<prefix>/<subpath>/... is
    # forwarded to ``app_proxy_url``/... (see devstore/proxy.py). None: the app has no proxy.
    app_proxy_url: str | None = None
    app_proxy_prefix: str = "apps"
    app_proxy_subpath: str = "oncecode"
    # The app as the admin knows it (shopify.app.toml): where its home is served (APP_URL + the path of
    # application_url; None: no admin page can frame it), the scopes a managed installation grants,
    # its handle (the admin URL's slug) and name.
    app_url: str | None = None
    app_home_path: str = field(default_factory=toml_home_path)
    app_scopes: str = field(default_factory=toml_scopes)
    app_handle: str = field(default_factory=toml_handle)
    app_name: str = field(default_factory=toml_name)
    legacy_install_flow: bool = field(default_factory=toml_legacy_install)

    @property
    def app_home_url(self) -> str | None:
        """The embedded app home, e.g. ``http://127.0.0.1:8000`` (the admin frames this + a path)."""
        return None if not self.app_url else self.app_url.rstrip("/") + self.app_home_path

    @property
    def webhook_api_version(self) -> str:
        """The version webhook payloads are rendered at (``X-Shopify-API-Version``): the newest."""
        return self.api_versions[-1]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DevstoreConfig:
        """The same SHOPIFY_API_KEY / SHOPIFY_API_SECRET the app reads, so one .env serves both."""
        env = os.environ if environ is None else environ
        key, secret = env.get("SHOPIFY_API_KEY", "").strip(), env.get("SHOPIFY_API_SECRET", "").strip()
        if not key or not secret:
            raise SystemExit("devstore needs SHOPIFY_API_KEY and SHOPIFY_API_SECRET (the app's client id and secret)")
        shops = tuple(s.strip() for s in env.get("DEVSTORE_SHOPS", ",".join(DEFAULT_SHOPS)).split(",") if s.strip())
        proxy = app_proxy_config(env)
        return cls(api_key=key, api_secret=secret,
                   database_url=env.get("DEVSTORE_DATABASE_URL", "sqlite://"),
                   shops=shops, auto_approve=env.get("DEVSTORE_AUTO_APPROVE", "") in ("1", "true", "yes"),
                   retry_base_seconds=float(env.get("DEVSTORE_RETRY_BASE_SECONDS", "5") or 5),
                   app_proxy_url=proxy.get("url"), app_proxy_prefix=proxy.get("prefix", "apps"),
                   app_proxy_subpath=proxy.get("subpath", "oncecode"),
                   app_url=(env.get("DEVSTORE_APP_URL", "") or env.get("APP_URL", "")).strip().rstrip("/") or None)


def app_proxy_config(env: Mapping[str, str], app_config: Path = APP_CONFIG) -> dict[str, str]:
    """The app's proxy as the store would have it installed: prefix and subpath from ``[app_proxy]`` in
    shopify.app.toml, and its URL at the app's running address, as ``shopify app dev`` points it at the
    dev tunnel: ``DEVSTORE_APP_PROXY_URL`` if set, else ``APP_URL`` + the path of the toml's ``url``."""
    try:
        section = tomllib.loads(app_config.read_text()).get("app_proxy") or {}
    except (OSError, tomllib.TOMLDecodeError):
        section = {}
    proxy = {key: str(section[key]) for key in ("prefix", "subpath") if section.get(key)}
    url = env.get("DEVSTORE_APP_PROXY_URL", "").strip()
    app_url = env.get("APP_URL", "").strip().rstrip("/")
    if not url and app_url and section.get("url"):
        url = app_url + urlsplit(str(section["url"])).path
    if url:
        proxy["url"] = url
    return proxy


@functools.cache
def _empty_tables() -> sqlite3.Connection:
    """A memory database with devstore's tables and nothing in them, made once per process: the
    template every memory store is copied from."""
    template = sqlite3.connect(":memory:", check_same_thread=False)
    engine = create_engine("sqlite://", creator=lambda: template, poolclass=StaticPool)
    Base.metadata.create_all(engine)
    return template


class State:
    """The database of all pretend stores, plus an id source shaped like Shopify's ids."""

    def __init__(self, config: DevstoreConfig) -> None:
        self.config = config
        memory = config.database_url in ("sqlite://", "sqlite:///:memory:")
        self.engine = create_engine(
            config.database_url,
            connect_args={"check_same_thread": False, "timeout": 15},
            **({"poolclass": StaticPool} if memory else {}),
        )

        @event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Run at the start of every session, before the caller sees anything: the store's background
        # work that is due (``devstore.admin.jobs``), so every reader finds it done, as on Shopify.
        self.on_session: list[Callable[[Session], None]] = []
        # One writer at a time: SQLite serialises writes anyway, and this keeps read-modify-write
        # sequences (usage counts, the bucket) atomic across the server's threads.
        self.lock = threading.RLock()
        if memory:
            self._copy_empty_tables()
        else:
            if not self.schema_is_current():
                # No migrations for a stand-in store: a file written by an older devstore starts afresh.
                log.warning("devstore's state at %s predates this devstore's tables: starting with empty stores",
                            self.engine.url.render_as_string(hide_password=True))
                Base.metadata.drop_all(self.engine)
            Base.metadata.create_all(self.engine)
        self.ensure_stores()

    def _copy_empty_tables(self) -> None:
        """A new memory database gets devstore's tables as a copy of ``_empty_tables()`` (SQLite's backup
        API): well under a millisecond, where creating them costs ~12 ms, paid by every test's store."""
        connection = self.engine.raw_connection()
        try:
            with _empty_tables_lock:  # one reader of the template at a time
                _empty_tables().backup(connection.driver_connection)  # type: ignore[union-attr]
        finally:
            connection.close()

    def schema_is_current(self) -> bool:
        """Whether every existing table has every column the models define (missing tables get created)."""
        inspector = inspect(self.engine)
        for table in Base.metadata.sorted_tables:
            if inspector.has_table(table.name):
                present = {column["name"] for column in inspector.get_columns(table.name)}
                if not {column.name for column in table.columns} <= present:
                    return False
        return True

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.lock:
            session = self.sessions()
            try:
                for hook in self.on_session:
                    hook(session)
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    def ensure_stores(self) -> None:
        with self.session() as session:
            for domain in self.config.shops:
                if session.get(Store, domain) is None:
                    name = domain.split(".")[0].replace("-", " ").title()
                    session.add(Store(domain=domain, name=name, faults={}))

    def reset(self) -> None:
        """Forget everything: every store back to empty, installs and all."""
        with self.lock:
            Base.metadata.drop_all(self.engine)
            Base.metadata.create_all(self.engine)
            self.ensure_stores()

    @staticmethod
    def new_id() -> int:
        """A fresh id in Shopify's range (large, positive, below 2**63)."""
        return 1_000_000_000_000 + secrets.randbelow(9_000_000_000_000_000_000 - 1_000_000_000_000)
