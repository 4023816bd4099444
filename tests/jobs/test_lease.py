"""Claim, renew, finish, hand back; heartbeat self-fencing; fenced, retried metric flushes."""
from __future__ import annotations

import time

import pytest
from sqlalchemy.exc import OperationalError

from jobs.db import session_scope
from jobs.db_retry import retry_db
from jobs.heartbeat import Heartbeat
from jobs.lease import Lease, LeaseLost, claim, finish, hand_back, renew
from jobs.metric_writer import MetricBuffer
from jobs.models import EpochMetric, Job
from tests.jobs.training_fixtures import bare_job


@pytest.fixture
def job_id(session_factory) -> str:
    return bare_job(session_factory, "lease-owner")


def take(factory, job_id, owner="w1", ttl=60.0, max_attempts=3) -> Lease | None:
    with session_scope(factory) as session:
        return claim(session, job_id, owner, ttl_s=ttl, max_attempts=max_attempts)


def row(factory, job_id) -> Job:
    with session_scope(factory) as session:
        return session.get(Job, job_id)


def test_claim_is_exclusive_and_counts_attempts(session_factory, job_id):
    first = take(session_factory, job_id)
    assert first.epoch == 1 and take(session_factory, job_id, "w2") is None
    job = row(session_factory, job_id)
    assert (job.status, job.attempts, job.lease_owner) == ("running", 1, "w1")


def test_an_expired_lease_is_taken_over_with_a_higher_number(session_factory, job_id):
    first = take(session_factory, job_id, ttl=0.0)
    second = take(session_factory, job_id, "w2")
    assert second.epoch == first.epoch + 1
    with session_scope(session_factory) as session:
        assert renew(session, first, ttl_s=60) is None  # the old holder learns it lost
        assert finish(session, first, status="succeeded") is False
        assert renew(session, second, ttl_s=60) is False


def test_max_attempts_stops_claims(session_factory, job_id):
    for _ in range(2):
        assert take(session_factory, job_id, ttl=0.0, max_attempts=2) is not None
    assert take(session_factory, job_id, ttl=0.0, max_attempts=2) is None


def test_renew_relays_cancel_and_claim_keeps_cancelling(session_factory, job_id):
    lease = take(session_factory, job_id, ttl=0.0)
    with session_scope(session_factory) as session:
        session.get(Job, job_id).cancel_requested = True
    again = take(session_factory, job_id, "w2")
    assert row(session_factory, job_id).status == "cancelling"
    with session_scope(session_factory) as session:
        assert renew(session, again, ttl_s=60) is True
        assert renew(session, lease, ttl_s=60) is None


def test_hand_back_refunds_the_attempt(session_factory, job_id):
    lease = take(session_factory, job_id)
    with session_scope(session_factory) as session:
        assert hand_back(session, lease)
    job = row(session_factory, job_id)
    assert (job.status, job.attempts, job.lease_owner, job.lease_expires_at) == (
        "queued", 0, None, None)
    with session_scope(session_factory) as session:
        assert not hand_back(session, lease)


def test_heartbeat_renews_then_fences_itself_when_the_lease_is_taken(session_factory, job_id):
    lease = take(session_factory, job_id, ttl=1.0)
    beat = Heartbeat(session_factory, lease, ttl_s=1.0, every_s=0.05)
    beat.start()
    try:
        time.sleep(1.3)  # longer than the TTL: only renewals keep it
        assert not beat.lost and take(session_factory, job_id, "w2") is None
        with session_scope(session_factory) as session:
            session.get(Job, job_id).lease_epoch += 1
        _wait_for(lambda: beat.lost)
    finally:
        beat.stop()


class _Unreachable:
    """A session factory whose database is down: every use raises OperationalError."""

    def __call__(self):
        raise OperationalError("connect", {}, Exception("connection refused"))


def test_heartbeat_self_fences_when_the_database_is_unreachable(session_factory, job_id):
    lease = take(session_factory, job_id, ttl=0.5)
    beat = Heartbeat(_Unreachable(), lease, ttl_s=0.5, every_s=0.05)
    started = time.monotonic()
    beat.start()
    try:
        _wait_for(lambda: beat.lost)
        assert time.monotonic() - started < 0.5  # before the lease could expire
    finally:
        beat.stop()


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


class _Flaky:
    """Delegates to a real factory but fails the first `failures` sessions."""

    def __init__(self, factory, failures: int):
        self.factory, self.failures = factory, failures

    def __call__(self):
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("connect", {}, Exception("terminating connection"))
        return self.factory()


def record(epoch: int) -> dict:
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": None, "train_accuracy": 0.5,
            "val_accuracy": None, "learning_rate": 0.1, "seconds": 0.0,
            "layers": [{"layer": 1, "weight_grad_norm": 1.0, "bias_grad_norm": float("nan"),
                        "delta_norm": 1.0, "weight_norm": 1.0, "update_ratio": 0.1}]}


def test_a_failed_flush_keeps_its_rows_and_retries_with_backoff(session_factory, job_id):
    lease = take(session_factory, job_id)
    now = [0.0]
    flaky = _Flaky(session_factory, failures=2)
    buffer = MetricBuffer(flaky, lease, flush_seconds=0, flush_rows=1, clock=lambda: now[0])
    buffer.add(record(1))  # fails, backs off 0.05 s
    buffer.add(record(2))  # still backing off: not even tried
    assert buffer.pending == 2 and flaky.failures == 1
    now[0] = 1.0
    buffer.add(record(3))  # fails again
    now[0] = 2.0
    buffer.add(record(4))  # succeeds with all four
    assert buffer.pending == 0
    with session_scope(session_factory) as session:
        assert session.query(EpochMetric).count() == 4
        assert session.get(Job, job_id).epoch == 4


def test_a_failed_background_flush_puts_its_rows_back_and_retries(session_factory, job_id):
    lease = take(session_factory, job_id)
    now = [0.0]
    flaky = _Flaky(session_factory, failures=1)
    buffer = MetricBuffer(flaky, lease, flush_seconds=0, flush_rows=1, clock=lambda: now[0],
                          background=True)
    buffer.add(record(1))  # starts a background flush, which fails
    buffer.settle()        # its rows come back, and the buffer backs off
    assert buffer.pending == 1 and flaky.failures == 0
    buffer.add(record(2))  # still backing off: not even tried
    assert buffer._inflight is None and buffer.pending == 2
    now[0] = 1.0
    buffer.add(record(3))  # retried with all three, in the background
    buffer.settle()
    assert buffer.pending == 0
    with session_scope(session_factory) as session:
        assert session.query(EpochMetric).count() == 3
        assert session.get(Job, job_id).epoch == 3


def test_a_background_flush_that_lost_the_lease_raises_in_the_training_thread(session_factory,
                                                                              job_id):
    lease = take(session_factory, job_id, ttl=0.0)
    take(session_factory, job_id, "w2")
    buffer = MetricBuffer(session_factory, lease, flush_seconds=60, flush_rows=1,
                          background=True)
    buffer.add(record(1))  # the background flush finds the lease gone
    with pytest.raises(LeaseLost):
        buffer.settle()
    assert buffer.pending == 1  # kept, never written
    with session_scope(session_factory) as session:
        assert session.query(EpochMetric).count() == 0


def test_a_flush_after_the_lease_is_lost_raises(session_factory, job_id):
    lease = take(session_factory, job_id, ttl=0.0)
    take(session_factory, job_id, "w2")
    buffer = MetricBuffer(session_factory, lease, flush_seconds=60, flush_rows=100)
    buffer.add(record(1))
    with pytest.raises(LeaseLost):
        buffer.drain(1, lambda: False)
    with session_scope(session_factory) as session:
        assert session.query(EpochMetric).count() == 0


def test_retry_gives_up_when_the_lease_is_lost():
    calls = []

    def failing():
        calls.append(1)
        raise OperationalError("x", {}, Exception("down"))

    with pytest.raises(LeaseLost):
        retry_db(failing, lease_lost=lambda: len(calls) >= 3, what="t", sleep=lambda s: None)
    assert len(calls) == 3
    with pytest.raises(ValueError):  # not a database error: no retry
        retry_db(lambda: int("x"), lease_lost=lambda: False, what="t")
