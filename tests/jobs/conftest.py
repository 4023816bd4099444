"""Generic fixtures for `jobs/` tests: a temp-file SQLite database, users, blob storage."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from jobs.db import make_engine, make_sessionmaker
from jobs.models import Base, User
from jobs.storage import BlobStore


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    # A file, not :memory:, so a second connection sees the same database (as in production).
    eng = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def session(session_factory) -> Iterator[Session]:
    s = session_factory()
    yield s
    s.rollback()
    s.close()


@pytest.fixture
def user(session) -> Callable[..., User]:
    """Factory: `user()` or `user(name="ann", is_admin=True)` adds and flushes a User."""

    def make(name: str | None = None, **fields) -> User:
        row = User(name=name or f"user-{uuid.uuid4().hex[:8]}", **fields)
        session.add(row)
        session.flush()
        return row

    return make


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "storage")
