"""Fixtures for every test package: settings on a temporary SQLite file, the app, users."""
from __future__ import annotations

import pytest
from sqlalchemy import event

from jobs import metric_reader
from jobs.db import make_engine, make_sessionmaker
from jobs.models import Base
from jobs.settings import Settings
from tests.factories import bearer, make_token


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Embedded-mode settings in a temporary folder; an in-memory broker for unit tests."""
    return Settings.from_env(state_dir=tmp_path / "state",
                             database_url=f"sqlite:///{tmp_path / 'gradtrace.db'}",
                             broker_url="memory://", storage_dir=tmp_path / "storage")


@pytest.fixture
def session_factory(settings):
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def app(settings, session_factory):
    from service import create_app

    settings.ensure_dirs()
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth(session_factory, settings):
    """auth("alice") -> headers with a fresh bearer token for user alice."""
    def make(name: str = "alice", *, admin: bool = False) -> dict:
        return bearer(make_token(session_factory, settings.token_pepper, name, admin=admin))
    return make


@pytest.fixture
def record_sql(monkeypatch):
    """`record_sql(engine)`: the SQL run from then on, in order, through SQLAlchemy on
    `engine` and straight through the driver (jobs.metric_reader's driver_rows and
    Prepared statements)."""
    def start(engine) -> list[str]:
        seen: list[str] = []
        event.listen(engine, "before_cursor_execute",
                     lambda conn, cursor, sql, *args: seen.append(sql))
        direct = metric_reader._fetch

        def fetch(conn, sql, params):
            seen.append(sql)
            return direct(conn, sql, params)
        monkeypatch.setattr(metric_reader, "_fetch", fetch)
        return seen
    return start
