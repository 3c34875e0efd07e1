"""The CLI's settings: `make run`'s in development with no exports, and one line, not a traceback,
when none are given. The CLI runs as a real `flask` process here: its environment is the point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app import create_app
from app.config import SETTING_NAMES, load_settings, remember_development
from app.errors import ConfigError
from tests.conftest import API_KEY, API_SECRET, TOKEN_KEY
from tests.e2e.harness import SHOP, World
from tests.e2e.test_reconciliation import drop_orders_paid, place_order, welcome_codes

# `flask` itself (flask.cli.main is its entry point), with the instance folder moved to a test's own.
FLASK = ("import sys; from pathlib import Path; import app.config; "
         "app.config.INSTANCE_DIR = Path(sys.argv.pop(1)); sys.argv[0] = 'flask'; "
         "from flask.cli import main; main()")


def flask(instance: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``flask --app app ARGS`` in a fresh directory, with none of OnceCode's variables exported."""
    env = {name: value for name, value in os.environ.items() if name not in SETTING_NAMES}
    workdir = instance.parent / "elsewhere"
    workdir.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-c", FLASK, str(instance), "--app", "app", *args],  # noqa: S603
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=60)


def test_without_oncecode_env_the_cli_says_in_one_line_what_is_missing(tmp_path):
    result = flask(tmp_path / "instance", "shops", "list")
    assert result.returncode != 0 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ONCECODE_ENV is not set, so OnceCode runs as production")
    assert "DATABASE_URL" in line and "set ONCECODE_ENV=development for the local setup" in line


def _remember(monkeypatch, instance: Path, **environ: str) -> Path:
    """What `make run` does at start: resolve its settings from its environment, then keep them."""
    monkeypatch.setattr("app.config.INSTANCE_DIR", instance)
    environ = {"ONCECODE_ENV": "development", **environ}
    return remember_development(load_settings(environ, read_development_file=False), environ)


def test_make_runs_file_is_private_and_chooses_development_for_the_cli_only(monkeypatch, tmp_path):
    path = _remember(monkeypatch, tmp_path, DEVSTORE_PORT="8123", SECRET_KEY="it's a $ecret ${HOME} \\ here")
    assert path.stat().st_mode & 0o077 == 0
    cli = load_settings({}, prefer_development=True)
    assert cli.env == "development" and cli.secret_key == "it's a $ecret ${HOME} \\ here"
    assert cli.store_url(SHOP) == f"http://127.0.0.1:8123/stores/{SHOP}" and not cli.stores_are_shopify
    # What is exported still wins over the file.
    exported = {"SHOPIFY_STORE_BASE_URL": "http://127.0.0.1:9/stores/{shop}"}
    assert load_settings(exported, prefer_development=True).store_url(SHOP) == f"http://127.0.0.1:9/stores/{SHOP}"
    # A server never falls back to development, whatever was left under instance/.
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="ONCECODE_ENV is not set"):
        load_settings({})
    with pytest.raises(ConfigError, match="ONCECODE_ENV is not set"):
        create_app()


def test_development_never_points_at_the_real_shopify(monkeypatch, tmp_path):
    monkeypatch.setattr("app.config.INSTANCE_DIR", tmp_path)
    settings = load_settings({"ONCECODE_ENV": "development"})
    assert settings.store_url(SHOP) == f"http://127.0.0.1:8001/stores/{SHOP}"


def test_the_cli_reconciles_and_links_through_devstore_with_no_exports(world: World, monkeypatch, tmp_path):
    [(customer, issued)] = welcome_codes(world)
    drop_orders_paid(world)
    place_order(world, [issued.code], customer["id"])
    settings = world.rt.settings
    _remember(monkeypatch, tmp_path / "instance", DEVSTORE_PORT=str(urlsplit(world.store_url).port),
              DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url or "", SHOPIFY_API_KEY=API_KEY,
              SHOPIFY_API_SECRET=API_SECRET, TOKEN_ENCRYPTION_KEY=TOKEN_KEY)

    caught_up = flask(tmp_path / "instance", "reconcile", "now", SHOP, "--here")
    assert caught_up.returncode == 0, caught_up.stderr
    assert "done: 1 orders read in 1 pages; 1 had not reached us by webhook" in caught_up.stdout

    shown = flask(tmp_path / "instance", "codes", "show", SHOP, issued.code)
    assert shown.returncode == 0, shown.stderr
    code = json.loads(shown.stdout)
    assert code["status"] == "redeemed" and code["url"] == f"{world.store_url}/stores/{SHOP}/discount/{issued.code}"
