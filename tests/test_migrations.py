"""Alembic is the only schema source: the migrated database must match the models exactly."""

from __future__ import annotations

import re

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from app.codes.generator import DEFAULT_ALPHABET
from app.config import ROOT
from app.db import Base
from tests.conftest import migrate


def _differences(url: str) -> list:
    engine = create_engine(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    return diff


def test_postgresql_schema_matches_the_models(migrated_database):
    assert _differences(migrated_database) == []


@pytest.mark.parametrize("runs", [1, 2])
def test_sqlite_schema_matches_the_models_and_upgrade_is_repeatable(tmp_path, runs):
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    for _ in range(runs):
        migrate(url)
    assert _differences(url) == []


def _alembic(url: str, action: str, revision: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    getattr(command, action)(config, revision)


def _programs_sql(url: str) -> str:
    engine = create_engine(url)
    with engine.connect() as connection:
        sql = connection.execute(text("SELECT sql FROM sqlite_master WHERE name = 'programs'")).scalar_one()
    engine.dispose()
    return sql


def test_0002_gives_existing_programs_the_default_alphabet(tmp_path):
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    _alembic(url, "upgrade", "0001")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO shops (id, domain, scopes, api_version, installed_at, settings, created_at, updated_at) "
            "VALUES (1, 'demo.myshopify.com', '', '2026-10', '2026-01-01', '{}', '2026-01-01', '2026-01-01')"))
        connection.execute(text(
            "INSERT INTO programs (shop_id, kind, name, active, value_type, value, code_prefix, code_length, "
            "lock_to_customer, combines_with_product, combines_with_order, combines_with_shipping, created_at, "
            "updated_at) VALUES (1, 'welcome', 'Welcome', 0, 'percentage', 10, 'W-', 10, 1, 0, 0, 1, "
            "'2026-01-01', '2026-01-01')"))
    _alembic(url, "upgrade", "head")
    with engine.connect() as connection:
        row = connection.execute(text("SELECT code_alphabet, code_pattern FROM programs")).one()
    engine.dispose()
    assert tuple(row) == (DEFAULT_ALPHABET, None)


def test_0002_downgrades_cleanly_and_keeps_the_check_constraints(tmp_path):
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    migrate(url)
    checks = re.findall(r"CONSTRAINT (ck_\w+) CHECK", _programs_sql(url))
    assert len(checks) == 6
    _alembic(url, "downgrade", "0001")
    assert "code_alphabet" not in _programs_sql(url) and "code_pattern" not in _programs_sql(url)
    assert sorted(re.findall(r"CONSTRAINT (ck_\w+) CHECK", _programs_sql(url))) == sorted(checks)
    migrate(url)
    assert _differences(url) == []
