"""Alembic: upgrade from empty to head on SQLite and PostgreSQL; schema matches models."""
from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from jobs.models import Base
from tests.integration.services import ROOT, fresh_postgres_database


def _config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def _assert_matches_models(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == []
    assert set(Base.metadata.tables) <= tables


def _round_trip(url: str) -> None:
    config = _config(url)
    command.upgrade(config, "head")
    _assert_matches_models(url)
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    _assert_matches_models(url)


def test_single_head():
    heads = ScriptDirectory.from_config(_config("sqlite://")).get_heads()
    assert len(heads) == 1


def test_sqlite_upgrade_matches_models(tmp_path):
    _round_trip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.integration
def test_postgres_upgrade_matches_models():
    with fresh_postgres_database() as url:
        _round_trip(url)
