"""Generic fixtures for `jobs/` tests: a temp-file SQLite database, users, blob storage."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.models import Base, Job, User
from jobs.storage import BlobStore
from tests.integration.services import fresh_postgres_database


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    # A file, not :memory:, so a second connection sees the same database (as in production).
    eng = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def either_engine(request, tmp_path) -> Iterator[Engine]:
    """Each database in turn, for code whose SQL each dialect renders (a module opts in by
    defining `engine` as this); PostgreSQL in a fresh database of its own."""
    with ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'test.db'}" if request.param == "sqlite"
               else stack.enter_context(fresh_postgres_database()))
        eng = make_engine(url)
        stack.callback(eng.dispose)
        Base.metadata.create_all(eng)
        yield eng


@pytest.fixture
def reads(engine, record_sql) -> list[str]:
    """The SQL the code under test runs from now on (see record_sql)."""
    return record_sql(engine)


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
def fast(settings):
    """Settings for worker-side tests: a quick heartbeat, checkpoints at every chance."""
    return settings.model_copy(update={"heartbeat_s": 0.05, "lease_ttl_s": 5.0,
                                       "checkpoint_interval_s": 0.0})


@pytest.fixture
def owner(session_factory) -> str:
    """The id of a committed user who owns the worker-side tests' datasets and jobs."""
    with session_scope(session_factory) as session:
        user = User(name="trainer")
        session.add(user)
        session.flush()
        return user.id


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "storage")


@pytest.fixture
def train_job(session_factory, settings, store):
    """Issue 9: train_job(spec, dataset=parse_builtin("moons")) -> the finished Job,
    trained in-process by the worker's own `run_job` on this SQLite database."""
    from jobs.auth import get_or_create_user
    from jobs.datasets import create_dataset
    from jobs.db import session_scope
    from jobs.submission import create_job
    from jobs.training import run_job

    def train(spec: dict, dataset, shutdown=None) -> "Job":
        with session_scope(session_factory) as s:
            owner = get_or_create_user(s, "trainer")
            ds = create_dataset(s, store, owner_id=owner.id, name="data", parsed=dataset,
                                source="json", max_storage_bytes=10**9)
            job, _ = create_job(s, settings, owner_id=owner.id, dataset_id=ds.id, name="t",
                                raw_spec=spec)
        run_job(session_factory, settings, job.id, worker_id="test-worker", shutdown=shutdown)
        with session_scope(session_factory) as s:
            return s.get(Job, job.id)
    return train
