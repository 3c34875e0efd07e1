"""Alembic is the only schema source: the migrated database must match the models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

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
