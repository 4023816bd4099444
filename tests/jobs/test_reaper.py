"""The reaper: expired leases re-queued, stale queued jobs re-sent, poison jobs failed."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from jobs.clock import db_now
from jobs.db import session_scope
from jobs.lease import claim
from jobs.models import Job, User
from jobs.reaper import reap
from worker.reaper_loop import ReaperLoop, reap_and_send


@pytest.fixture
def reaper_settings(settings):
    return settings.model_copy(update={"max_attempts": 3, "requeue_queued_after_s": 60.0})


@pytest.fixture
def new_job(session_factory):
    with session_scope(session_factory) as session:
        user = User(name="reaped")
        session.add(user)
        session.flush()
        owner = user.id

    def make(**fields) -> str:
        with session_scope(session_factory) as session:
            now = db_now(session)
            job = Job(owner_id=owner, spec={}, epochs=10,
                      **{"status": "queued", "enqueued_at": now, **fields})
            session.add(job)
            session.flush()
            return job.id
    return make


def crash(factory, job_id, owner="w1@host") -> None:
    """A worker claims the job and dies (its lease expired a second ago: with a zero ttl, a
    reap in the same millisecond, which a fast machine manages, would not see it expired)."""
    with session_scope(factory) as session:
        assert claim(session, job_id, owner, ttl_s=-1.0, max_attempts=99) is not None


def reap_now(factory, settings):
    with session_scope(factory) as session:
        return reap(session, settings)


def status(factory, job_id) -> Job:
    with session_scope(factory) as session:
        return session.get(Job, job_id)


def test_an_expired_lease_goes_back_to_the_queue(session_factory, reaper_settings, new_job):
    job_id = new_job()
    crash(session_factory, job_id)
    result = reap_now(session_factory, reaper_settings)
    assert result.requeued == [job_id] and result.to_send == [job_id]
    job = status(session_factory, job_id)
    assert (job.status, job.lease_owner, job.attempts) == ("queued", None, 1)
    assert reap_now(session_factory, reaper_settings).to_send == []  # once only


def test_a_live_lease_is_left_alone(session_factory, reaper_settings, new_job):
    job_id = new_job()
    with session_scope(session_factory) as session:
        claim(session, job_id, "w1", ttl_s=60, max_attempts=3)
    assert reap_now(session_factory, reaper_settings).to_send == []
    assert status(session_factory, job_id).status == "running"


def test_the_last_attempt_fails_with_a_clear_reason(session_factory, reaper_settings, new_job):
    job_id = new_job()
    for attempt in range(3):
        crash(session_factory, job_id, owner=f"w{attempt}@host")
        result = reap_now(session_factory, reaper_settings)
    assert result.gave_up == [job_id] and result.to_send == []
    job = status(session_factory, job_id)
    assert job.status == "failed" and job.finished_at is not None
    assert job.error.startswith("gave up after 3 attempts: the worker died each time "
                                "(last: w2@host, lease expired at ")


def test_a_dead_workers_cancelling_job_is_cancelled(session_factory, reaper_settings, new_job):
    job_id = new_job()
    crash(session_factory, job_id)
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        job.cancel_requested, job.status = True, "cancelling"
    assert reap_now(session_factory, reaper_settings).cancelled == [job_id]
    assert status(session_factory, job_id).status == "cancelled"


def test_a_stale_queued_job_is_resent_once_per_period(session_factory, reaper_settings, new_job):
    fresh = new_job()
    with session_scope(session_factory) as session:
        old_time = db_now(session) - timedelta(seconds=120)
    stale, never_sent = new_job(enqueued_at=old_time), new_job()
    with session_scope(session_factory) as session:
        session.get(Job, never_sent).enqueued_at = None
    result = reap_now(session_factory, reaper_settings)
    assert sorted(result.resent) == sorted([stale, never_sent]) and fresh not in result.resent
    assert reap_now(session_factory, reaper_settings).resent == []


def test_waiting_and_finished_jobs_are_never_touched(session_factory, reaper_settings, new_job):
    with session_scope(session_factory) as session:
        old = db_now(session) - timedelta(days=1)
    ids = [new_job(status=s, enqueued_at=old) for s in ("waiting", "succeeded", "failed")]
    assert reap_now(session_factory, reaper_settings).to_send == []
    assert [status(session_factory, i).status for i in ids] == ["waiting", "succeeded", "failed"]


def test_concurrent_reapers_requeue_each_job_exactly_once(session_factory, reaper_settings,
                                                          new_job):
    ids = [new_job() for _ in range(20)]
    for job_id in ids:
        crash(session_factory, job_id)
    sent: list[str] = []
    lock = threading.Lock()

    def send(job_id):
        with lock:
            sent.append(job_id)

    threads = [threading.Thread(target=reap_and_send,
                                args=(session_factory, reaper_settings, send))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sent) == sorted(ids)


def test_the_loop_sends_and_survives_errors(session_factory, reaper_settings, new_job):
    job_id = new_job()
    crash(session_factory, job_id)
    sent = threading.Event()
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database down for the first pass")
        return session_factory

    loop = ReaperLoop(factory, reaper_settings.model_copy(update={"reaper_interval_s": 0.02}),
                      lambda j: sent.set() if j == job_id else None)
    loop.start()
    try:
        assert sent.wait(5)
    finally:
        loop.stop()
        loop.join(2)
    assert len(calls) >= 2
