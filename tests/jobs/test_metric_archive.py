"""The metric archive: same answers as the rows, written when a job ends, gone with it."""
from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
from sqlalchemy import delete, func, select

import mlp
from jobs import metric_archive, training
from jobs.db import session_scope
from jobs.lease import claim
from jobs.metric_archive import (
    JSON_KIND,
    KIND,
    BadArchive,
    archive_columns,
    ensure_archive,
    from_bytes,
    load_archive,
    load_full_json,
    metrics_json,
    to_bytes,
    window_extremes,
    with_head,
)
from jobs.metric_reader import metrics_csv, read_metrics, read_rows
from jobs.metric_writer import EpochMetric, MetricBuffer, insert_ignoring_duplicates
from jobs.models import Artifact, Job
from tests.factories import metric_row
from tests.jobs.training_fixtures import StopAfter, job_row, make_dataset, make_job

SPEC = {"network": {"layers": [{"units": 4, "activation": "tanh"},
                               {"units": 3, "activation": "relu"},
                               {"units": 1, "activation": "sigmoid"}]}}
EPOCHS = 1000


def loss(epoch: int) -> float | None:
    # Spikes, dips, non-finite epochs (NULL) and a window with no finite loss at all.
    if 600 <= epoch < 640 or epoch % 41 == 0:
        return None
    if epoch % 37 == 0:
        return 9.0 + epoch / 1e4
    if epoch % 53 == 0:
        return -1.0 - epoch / 1e4
    return 1.0 / epoch + 0.01 * np.sin(epoch)


@pytest.fixture
def job_with(session, user):
    def make(epochs: int = EPOCHS, status: str = "succeeded", layers: int = 3) -> Job:
        job = Job(owner_id=user().id, name="m", spec=SPEC, epochs=epochs, status=status)
        session.add(job)
        session.flush()
        insert_ignoring_duplicates(session, EpochMetric, [
            metric_row(job.id, e, [{"delta_norm": None if e % 29 == 0 else e * 10.0 + k,
                                    "update_ratio": 1 / (e + k)} for k in range(1, layers + 1)],
                       train_loss=loss(e), learning_rate=0.1 / e, seconds=0.01)
            for e in range(1, epochs + 1)])
        return job
    return make


def artifact_count(session, job_id: str) -> int:
    return session.scalar(select(func.count()).select_from(Artifact)
                          .where(Artifact.job_id == job_id, Artifact.kind.in_((KIND, JSON_KIND))))


@pytest.mark.parametrize("since_epoch,max_points", [
    (0, None), (590, None), (999, None), (1000, None), (0, 1000), (0, 999), (0, 100),
    (0, 7), (0, 2), (100, 60), (595, 10), (990, 4)])
def test_archive_reads_equal_row_reads(session, job_with, since_epoch, max_points):
    job = job_with()
    archive = ensure_archive(session, job)
    assert archive is not None
    rows = read_rows(session, job, since_epoch, max_points)
    from_archive = read_metrics(session, job, since_epoch=since_epoch, max_points=max_points)
    assert from_archive == rows
    columns = archive_columns(archive, job, since_epoch, max_points)
    assert metrics_json(columns, job_id=job.id) == metrics_json(rows, job_id=job.id)
    assert metrics_csv(columns) == metrics_csv(rows)


def test_non_finite_values_are_null_and_flagged(session, job_with):
    job = job_with()
    archive = ensure_archive(session, job)
    body = json.loads(metrics_json(archive_columns(archive, job)))
    assert body["nonfinite"] is True
    assert body["train_loss"][40] is None and body["train_loss"][0] == loss(1)
    assert body["val_loss"] == [None] * EPOCHS
    assert body["layers"][1]["delta_norm"][28] is None  # epoch 29
    tail = json.loads(metrics_json(archive_columns(archive, job, since_epoch=990)))
    assert tail["nonfinite"] is False and None not in tail["train_loss"]


def test_downsampling_keeps_each_windows_min_and_max(session, job_with):
    job = job_with()
    out = read_metrics(session, job, max_points=100, archive=ensure_archive(session, job))
    size = -(-EPOCHS // 50)
    for start in range(1, EPOCHS + 1, size):
        finite = [loss(e) for e in range(start, start + size) if loss(e) is not None]
        kept = [v for e, v in zip(out["epoch"], out["train_loss"]) if start <= e < start + size]
        if finite:
            assert min(finite) in kept and max(finite) in kept
        else:  # no finite loss in the window: its first epoch stands for it
            assert [e for e in out["epoch"] if start <= e < start + size] == [start]


def test_window_extremes_takes_the_first_of_equal_values():
    # Windows of 4, then 3; a window with no finite loss keeps its first epoch.
    loss = np.array([2.0, 1.0, 1.0, 2.0, np.nan, np.nan, 5.0])
    assert window_extremes(loss, 4).tolist() == [0, 1, 6]
    loss[6] = np.nan
    assert window_extremes(loss, 4).tolist() == [0, 1, 4]


def test_full_response_is_stored_encoded(session, job_with):
    job = job_with()
    archive = ensure_archive(session, job)
    full = load_full_json(session, job)
    head = {"job_id": job.id, "status": job.status}
    assert with_head(full, **head) == metrics_json(archive_columns(archive, job), **head)
    assert list(json.loads(with_head(full, **head)))[:3] == ["job_id", "status", "epoch"]


def test_running_jobs_and_incomplete_histories_get_no_archive(session, job_with):
    running = job_with(status="running")
    assert ensure_archive(session, running) is None
    gappy = job_with(layers=2)  # the spec has 3 layers
    assert ensure_archive(session, gappy) is None
    assert artifact_count(session, running.id) == artifact_count(session, gappy.id) == 0
    assert read_metrics(session, gappy) == read_rows(session, gappy, 0, None)


def test_an_unreadable_archive_falls_back_to_the_rows(session, job_with):
    job = job_with(epochs=50)
    ensure_archive(session, job)
    session.execute(Artifact.__table__.update().where(Artifact.job_id == job.id,
                                                      Artifact.kind == KIND)
                    .values(data=b"not an npz"))
    assert load_archive(session, job) is None
    assert read_metrics(session, job) == read_rows(session, job, 0, None)


def test_archive_bytes_round_trip_and_reject_pickles(session, job_with):
    job = job_with(epochs=20)
    archive = ensure_archive(session, job)
    again = from_bytes(to_bytes(archive))
    assert np.array_equal(again.layers, archive.layers, equal_nan=True)
    assert np.array_equal(again.epoch, archive.epoch)
    buf = io.BytesIO()
    np.savez(buf, epoch=np.array([{"x": 1}], dtype=object))  # would need unpickling
    with pytest.raises(BadArchive):
        from_bytes(buf.getvalue())


def test_deleting_the_job_deletes_its_archive(session, job_with):
    job = job_with(epochs=20)
    ensure_archive(session, job)
    assert artifact_count(session, job.id) == 2
    session.execute(delete(Job).where(Job.id == job.id))
    assert artifact_count(session, job.id) == 0


# --- written by the worker when the job ends ---------------------------------------------

def _cancel_soon(factory, job_id: str) -> threading.Timer:
    def cancel():
        with session_scope(factory) as session:
            job = session.get(Job, job_id)
            job.cancel_requested, job.status = True, "cancelling"
    timer = threading.Timer(0.3, cancel)
    timer.start()
    return timer


@pytest.mark.parametrize("ending", ["succeeded", "failed", "cancelled"])
def test_the_worker_archives_every_final_job(session_factory, fast, owner, ending):
    dataset = make_dataset(session_factory, fast, owner)
    epochs = {"succeeded": 30}.get(ending, 100000)
    job_id = make_job(session_factory, fast, owner, dataset, epochs=epochs,
                      **({"max_runtime_s": 0.3} if ending == "failed" else {}))
    if ending == "cancelled":
        _cancel_soon(session_factory, job_id)
    assert training.run_job(session_factory, fast, job_id, worker_id="w") == ending
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        assert artifact_count(session, job_id) == 2
        archive = load_archive(session, job)
        assert archive is not None and len(archive.epoch) == job.epoch > 0
        for since_epoch, max_points in ((0, None), (job.epoch - 3, None), (0, 10)):
            assert read_metrics(session, job, since_epoch=since_epoch,
                                max_points=max_points) == read_rows(session, job, since_epoch,
                                                                    max_points)


def _assert_same_archive(a, b) -> None:
    assert np.array_equal(a.epoch, b.epoch) and a.columns.keys() == b.columns.keys()
    for column in a.columns:
        assert np.array_equal(a.columns[column], b.columns[column], equal_nan=True)
    assert np.array_equal(a.layers, b.layers, equal_nan=True)


def _stored_and_rebuilt(factory, job_id: str):
    """The job's stored archive, and the one its rows give."""
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        return load_archive(session, job), metric_archive.build_archive(session, job)


def test_a_job_trained_from_scratch_is_archived_from_what_its_worker_wrote(
        session_factory, fast, owner, monkeypatch):
    """The worker does not read the job's rows back: it archives the rows it committed,
    which give the same archive as the stored rows."""
    def no_read_back(session, job):
        raise AssertionError("the worker read the rows back")
    monkeypatch.setattr(metric_archive, "build_archive", no_read_back)
    dataset = make_dataset(session_factory, fast, owner)
    job_id = make_job(session_factory, fast, owner, dataset, validation_split=0.25)
    assert training.run_job(session_factory, fast, job_id, worker_id="w") == "succeeded"
    monkeypatch.undo()
    stored, rebuilt = _stored_and_rebuilt(session_factory, job_id)
    assert stored is not None and len(stored.epoch) == 30
    assert not np.isnan(stored.columns["val_loss"]).any()
    _assert_same_archive(stored, rebuilt)


def test_a_resumed_job_is_archived_from_its_rows(session_factory, fast, owner):
    """The attempt that finishes a resumed job wrote only the epochs after its checkpoint:
    its archive comes from the stored rows, every epoch of them."""
    dataset = make_dataset(session_factory, fast, owner)
    job_id = make_job(session_factory, fast, owner, dataset)
    assert training.run_job(session_factory, fast, job_id, worker_id="w",
                            shutdown=StopAfter(40)) == training.HANDED_BACK
    assert training.run_job(session_factory, fast, job_id, worker_id="w") == "succeeded"
    stored, rebuilt = _stored_and_rebuilt(session_factory, job_id)
    assert stored is not None and list(stored.epoch) == list(range(1, 31))
    _assert_same_archive(stored, rebuilt)


def test_a_retry_from_scratch_after_stored_rows_is_archived_from_the_rows(
        session_factory, fast, owner):
    """An attempt that stored rows and died before its first checkpoint: the next one
    starts from scratch, but the stored rows, kept over its own, are the job's. Here they
    differ from what it computes, as they may on another machine or engine version."""
    dataset = make_dataset(session_factory, fast, owner)
    job_id = make_job(session_factory, fast, owner, dataset)
    with session_scope(session_factory) as session:
        doomed = claim(session, job_id, "w-doomed", ttl_s=0.0, max_attempts=3)
    buffer = MetricBuffer(session_factory, doomed, flush_seconds=0, flush_rows=1)
    for epoch in (1, 2, 3):
        buffer.add(mlp.EpochRecord(
            epoch=epoch, train_loss=123.0, val_loss=None, train_accuracy=0.5,
            val_accuracy=None, learning_rate=0.01, seconds=0.0,
            layers=[mlp.LayerRecord(layer=k, weight_grad_norm=1.0, bias_grad_norm=1.0,
                                    delta_norm=1.0, weight_norm=1.0, update_ratio=1.0)
                    for k in (1, 2)]))
    buffer.drain(3, lambda: False)
    assert training.run_job(session_factory, fast, job_id, worker_id="w") == "succeeded"
    stored, rebuilt = _stored_and_rebuilt(session_factory, job_id)
    assert list(stored.columns["train_loss"][:3]) == [123.0] * 3
    _assert_same_archive(stored, rebuilt)


def test_a_handed_back_job_is_not_archived(session_factory, fast, owner):
    dataset = make_dataset(session_factory, fast, owner)
    job_id = make_job(session_factory, fast, owner, dataset, epochs=100000)
    outcome = training.run_job(session_factory, fast, job_id, worker_id="w",
                               shutdown=StopAfter(50))
    assert outcome == training.HANDED_BACK and job_row(session_factory, job_id).epoch > 0
    with session_scope(session_factory) as session:
        assert artifact_count(session, job_id) == 0
