"""The poll cache on PostgreSQL: entries the job-change feed vouches for are served with
no database work, and a change committed by another process shows once it is announced."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from jobs.change_feed import APPLICATION_NAME
from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.lease import claim
from jobs.settings import Settings
from service.poll_cache import EXTENSION
from tests.factories import claimed_metric_buffer, epoch_record
from tests.integration.services import fresh_postgres_database, migrate, wait_until


@pytest.fixture
def settings(tmp_path):
    with fresh_postgres_database() as url:
        migrate(url)  # the trigger that announces changes comes with migration 0003
        yield Settings.from_env(state_dir=tmp_path / "state", database_url=url,
                                broker_url="memory://", storage_dir=tmp_path / "storage")


@pytest.fixture
def session_factory(settings):
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def feed_generation(app) -> int:
    return wait_until(lambda: app.extensions[EXTENSION].listening(), timeout=10)


def test_a_confirmed_entry_is_served_without_the_database(app, client, alice, job_id,
                                                          statements):
    url = f"/v1/jobs/{job_id}"
    first = client.get(url, headers=alice)
    feed_generation(app)
    statements.clear()
    assert client.get(url, headers=alice).data == first.data
    assert len(statements) == 1 and "updated_at" in statements[0]  # checked once
    statements.clear()
    for _ in range(3):
        assert client.get(url, headers=alice).data == first.data
    assert statements == []


def test_another_process_commit_shows_once_announced(app, client, alice, job_id,
                                                     session_factory, statements):
    url = f"/v1/jobs/{job_id}/metrics"
    client.get(url, headers=alice)
    feed_generation(app)
    assert client.get(url, headers=alice).get_json()["epoch"] == []
    statements.clear()
    assert client.get(url, headers=alice).get_json()["epoch"] == [] and statements == []
    # A worker (here: its metric writer on its own connection) flushes two epochs.
    buffer = claimed_metric_buffer(session_factory, job_id)
    for epoch in (1, 2):
        buffer.add(epoch_record(epoch))
    buffer.flush()
    started = time.monotonic()
    wait_until(lambda: client.get(url, headers=alice).get_json()["epoch"] == [1, 2], timeout=2)
    assert time.monotonic() - started < 1.0
    status = client.get(f"/v1/jobs/{job_id}", headers=alice).get_json()["status"]
    assert status == "running"


def test_while_the_feed_is_down_every_poll_checks_the_job(app, client, alice, job_id,
                                                         session_factory, statements):
    url = f"/v1/jobs/{job_id}"
    client.get(url, headers=alice)
    generation = feed_generation(app)
    client.get(url, headers=alice)  # now trusted
    with session_scope(session_factory) as session:
        killed = session.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = :name AND datname = current_database()"),
            {"name": APPLICATION_NAME}).scalars().all()
    assert killed == [True]
    feed = app.extensions[EXTENSION].feed
    wait_until(lambda: not feed.live, timeout=5)
    # A change now reaches nobody's LISTEN (the feed waits a second before reconnecting):
    # polls must see it by checking the job.
    with session_scope(session_factory) as session:
        claim(session, job_id, "w1", ttl_s=60, max_attempts=3)
    statements.clear()
    assert client.get(url, headers=alice).get_json()["status"] == "running"
    assert any("updated_at" in sql for sql in statements) and feed.generation == generation
    assert feed_generation(app) == generation + 1
    assert client.get(url, headers=alice).get_json()["status"] == "running"
