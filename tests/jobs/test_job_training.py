"""run_job in process on SQLite: resume bit-identical, hand-back, cancel, runtime, fencing."""
from __future__ import annotations

import copy
import threading
import time

import pytest
from sqlalchemy import select

import mlp
from jobs import training
from jobs.artifacts import CHECKPOINT, load_artifact
from jobs.db import session_scope
from jobs.lease import claim
from jobs.models import Job
from tests.faults.reconcile import (
    duplicate_metric_rows,
    matches_reference,
    metric_row_count,
    missing_epochs,
)
from tests.jobs.training_fixtures import StopAfter, job_row, make_dataset, make_job


@pytest.fixture
def dataset(session_factory, fast, owner) -> str:
    return make_dataset(session_factory, fast, owner)


def run(factory, settings, job_id, **kw) -> str:
    return training.run_job(factory, settings, job_id, worker_id="w-test", **kw)


def test_uninterrupted_run_matches_the_engine(session_factory, fast, owner, dataset):
    job_id = make_job(session_factory, fast, owner, dataset)
    assert run(session_factory, fast, job_id) == "succeeded"
    job = job_row(session_factory, job_id)
    assert (job.status, job.attempts, job.epoch) == ("succeeded", 1, 30)
    with session_scope(session_factory) as session:
        assert matches_reference(session, fast.storage_dir, job_id)


def test_a_second_delivery_does_nothing(session_factory, fast, owner, dataset):
    job_id = make_job(session_factory, fast, owner, dataset)
    assert run(session_factory, fast, job_id) == "succeeded"
    assert run(session_factory, fast, job_id) == "not claimable"
    assert job_row(session_factory, job_id).attempts == 1


@pytest.mark.parametrize("storage", ["database", "folder"])
@pytest.mark.parametrize("stop_at", [1, 37, 200])
def test_shutdown_hands_back_and_resume_is_bit_identical(session_factory, fast, owner,
                                                         dataset, storage, stop_at):
    settings = fast.model_copy(update={"checkpoint_storage": storage})
    job_id = make_job(session_factory, settings, owner, dataset)
    assert run(session_factory, settings, job_id, shutdown=StopAfter(stop_at)) == "handed back"
    job = job_row(session_factory, job_id)
    # A graceful hand-back gives the attempt back and keeps the checkpoint.
    assert (job.status, job.attempts, job.lease_owner) == ("queued", 0, None)
    assert (job.checkpoint_uri is not None) == (storage == "folder")
    if storage == "folder":
        assert (settings.storage_dir / "checkpoints" / job.checkpoint_uri).is_file()
    assert run(session_factory, settings, job_id) == "succeeded"
    with session_scope(session_factory) as session:
        assert matches_reference(session, settings.storage_dir, job_id)
        assert duplicate_metric_rows(session) == 0
        assert metric_row_count(session, job_id) == 30
    if storage == "folder":  # a succeeded job's checkpoint file is removed
        assert list((settings.storage_dir / "checkpoints").iterdir()) == []


def test_resume_after_a_crash_recomputes_epochs_without_duplicates(session_factory, fast,
                                                                   owner, dataset):
    settings = fast.model_copy(update={"checkpoint_interval_s": 3600.0})
    job_id = make_job(session_factory, settings, owner, dataset)
    # Checkpoint early (epoch 2), then keep training and flushing metrics, then "die".
    run(session_factory, settings, job_id, shutdown=StopAfter(20))
    with session_scope(session_factory) as session:
        lease = claim(session, job_id, "w-doomed", ttl_s=0.0, max_attempts=3)
    flushed = _train_then_crash(session_factory, settings, lease, polls=150)
    assert flushed > 2
    # The lease expired (TTL 0): the next worker claims it and resumes from epoch 2.
    assert run(session_factory, settings, job_id) == "succeeded"
    with session_scope(session_factory) as session:
        assert matches_reference(session, settings.storage_dir, job_id)
        assert duplicate_metric_rows(session) == 0
    assert job_row(session_factory, job_id).attempts == 2


class Crash(BaseException):
    """The process dies: nothing after this point runs (no final flush or checkpoint)."""


class CrashAfter(StopAfter):
    def is_set(self) -> bool:
        if super().is_set():
            raise Crash()
        return False


@pytest.mark.parametrize("storage", ["database", "folder"])
def test_a_checkpoint_is_never_ahead_of_the_stored_metrics(session_factory, fast, owner,
                                                           dataset, storage):
    # Metrics would stay buffered for an hour; checkpoints are taken every epoch.
    settings = fast.model_copy(update={"metrics_flush_seconds": 3600.0, "checkpoint_storage":
                                       storage, "metrics_flush_rows": 10**6, "lease_ttl_s": 0.5})
    job_id = make_job(session_factory, settings, owner, dataset)
    with pytest.raises(Crash):
        run(session_factory, settings, job_id, shutdown=CrashAfter(123))
    time.sleep(0.6)  # the dead worker's lease expires
    assert run(session_factory, settings, job_id) == "succeeded"
    with session_scope(session_factory) as session:
        assert missing_epochs(session, job_id, 30) == []
        assert matches_reference(session, settings.storage_dir, job_id)


def _train_then_crash(factory, settings, lease, polls: int) -> int:
    """Train under `lease` for `polls` batches writing metrics, with no final checkpoint."""
    from jobs.checkpoint_store import CheckpointStore
    from jobs.heartbeat import Heartbeat
    from jobs.metric_writer import MetricBuffer

    run_ = training.Run(factory, settings, lease, Heartbeat(factory, lease, ttl_s=0, every_s=1),
                        CheckpointStore(settings))
    training._prepare(run_)
    buffer = MetricBuffer(factory, lease, flush_seconds=0, flush_rows=1)
    stop = StopAfter(polls)
    run_.trainer.fit(on_epoch=lambda r: buffer.add(r.to_dict()), should_stop=stop.is_set)
    with session_scope(factory) as session:
        return metric_row_count(session, lease.job_id)


def test_cancel_stops_at_the_next_beat_with_a_checkpoint(session_factory, fast, owner, dataset):
    job_id = make_job(session_factory, fast, owner, dataset, epochs=100000)
    timer = threading.Timer(0.3, _request_cancel, args=(session_factory, job_id))
    timer.start()
    assert run(session_factory, fast, job_id) == "cancelled"
    job = job_row(session_factory, job_id)
    assert job.status == "cancelled" and 0 < job.epoch < 100000
    with session_scope(session_factory) as session:
        assert load_artifact(session, job_id, CHECKPOINT) is not None


def _request_cancel(factory, job_id):
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        job.cancel_requested, job.status = True, "cancelling"


def test_runtime_limit_fails_with_the_reason_and_keeps_metrics(session_factory, fast, owner,
                                                               dataset):
    job_id = make_job(session_factory, fast, owner, dataset, epochs=100000, max_runtime_s=0.5)
    assert run(session_factory, fast, job_id) == "failed"
    job = job_row(session_factory, job_id)
    assert "runtime limit of 0.5 s (training.max_runtime_s)" in job.error
    with session_scope(session_factory) as session:
        assert metric_row_count(session, job_id) == job.epoch > 0
    assert job.run_seconds >= 0.5


def test_server_maximum_caps_the_runtime(session_factory, fast, owner, dataset):
    job_id = make_job(session_factory, fast, owner, dataset, epochs=100000)
    capped = fast.model_copy(update={"max_runtime_s": 0.3})
    assert run(session_factory, capped, job_id) == "failed"
    assert "runtime limit of 0.3 s" in job_row(session_factory, job_id).error


def test_runtime_used_by_earlier_attempts_counts(session_factory, fast, owner, dataset):
    fresh, resumed = (make_job(session_factory, fast, owner, dataset, epochs=100000,
                               max_runtime_s=1.0) for _ in range(2))
    with session_scope(session_factory) as session:
        session.get(Job, resumed).run_seconds = 0.8  # as if earlier attempts used 0.8 s
    assert run(session_factory, fast, fresh) == run(session_factory, fast, resumed) == "failed"
    assert job_row(session_factory, resumed).epoch < job_row(session_factory, fresh).epoch / 2


def test_a_worker_that_lost_its_lease_stops_and_writes_nothing(session_factory, fast, owner,
                                                               dataset):
    job_id = make_job(session_factory, fast, owner, dataset, epochs=100000)

    def steal():
        with session_scope(session_factory) as session:
            session.get(Job, job_id).lease_expires_at = None
            session.get(Job, job_id).lease_epoch += 1  # another worker's claim

    threading.Timer(0.3, steal).start()
    assert run(session_factory, fast, job_id) == "lease lost"
    before = job_row(session_factory, job_id)
    assert before.status == "running" and before.lease_owner == "w-test"


def test_divergence_fails_once_without_retry(session_factory, fast, owner, dataset):
    job_id = make_job(session_factory, fast, owner, dataset)
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        spec = copy.deepcopy(job.spec)
        spec["network"]["layers"][0]["activation"] = "identity"
        spec["optimizer"] = {"name": "sgd", "learning_rate": 1e6}  # overflows in epoch 4
        job.spec = mlp.validate_spec(spec)
    assert run(session_factory, fast, job_id) == "failed"
    job = job_row(session_factory, job_id)
    assert job.attempts == 1 and job.error.startswith("diverged at epoch 4")
    with session_scope(session_factory) as session:  # epochs before it are kept
        assert metric_row_count(session, job_id) == 3


def test_an_invalid_spec_fails_once_without_retry(session_factory, fast, owner, dataset):
    job_id = make_job(session_factory, fast, owner, dataset)
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        job.spec = {**job.spec, "optimizer": {**job.spec["optimizer"], "name": "sgd"}}
    assert run(session_factory, fast, job_id) == "failed"
    job = job_row(session_factory, job_id)
    assert job.attempts == 1 and job.error.startswith("invalid spec: optimizer.beta1")


def test_a_job_whose_dataset_is_gone_fails_at_once(session_factory, fast, owner, dataset):
    job_id = make_job(session_factory, fast, owner, dataset)
    with session_scope(session_factory) as session:
        session.get(Job, job_id).dataset_id = None
    assert run(session_factory, fast, job_id) == "failed"
    assert "dataset was deleted" in job_row(session_factory, job_id).error


def test_on_start_sees_the_job_name(session_factory, fast, owner, dataset):
    job_id = make_job(session_factory, fast, owner, dataset, name="poison-1", epochs=2)
    seen = []
    assert run(session_factory, fast, job_id, on_start=seen.append) == "succeeded"
    assert seen == ["poison-1"]


def test_no_job_row_is_left_running(session_factory, fast, owner, dataset):
    for _ in range(2):
        run(session_factory, fast, make_job(session_factory, fast, owner, dataset, epochs=3))
    with session_scope(session_factory) as session:
        assert session.scalars(select(Job.status)).all() == ["succeeded", "succeeded"]


class _FailingSessions:
    """A session factory whose calls number `failing` (1-based) raise OperationalError."""

    def __init__(self, factory, failing: set[int]):
        self.factory, self.failing, self.calls = factory, failing, 0

    def __call__(self):
        from sqlalchemy.exc import OperationalError

        self.calls += 1
        if self.calls in self.failing:
            raise OperationalError("connect", {}, Exception("server closed the connection"))
        return self.factory()


def test_loading_is_retried_through_a_dropped_connection(session_factory, fast, owner, dataset):
    settings = fast.model_copy(update={"heartbeat_s": 30.0})  # no beats in the way
    job_id = make_job(session_factory, settings, owner, dataset, epochs=3)
    flaky = _FailingSessions(session_factory, failing={2, 3})  # 1 is the claim
    assert run(flaky, settings, job_id) == "succeeded"
    assert job_row(session_factory, job_id).attempts == 1 and flaky.calls > 3
