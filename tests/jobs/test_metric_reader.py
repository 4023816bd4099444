"""read_metrics: columns, since_epoch, and min/max-preserving downsampling, each read
both from the rows (a running job) and from a finished job's metric archive."""
from __future__ import annotations

import math

import pytest

from jobs.metric_archive import ensure_archive
from jobs.metric_reader import SPARSE_READ_EPOCHS, read_metrics
from jobs.metric_writer import EpochMetric, insert_ignoring_duplicates
from jobs.models import Job
from tests.factories import metric_row


@pytest.fixture
def engine(either_engine):
    """Both databases: a running job's columns come from the driver's rows
    (jobs.metric_reader.driver_rows), whose SQL and parameters each dialect renders."""
    return either_engine


SPEC = {"network": {"layers": [{"units": 4, "activation": "tanh"},
                               {"units": 1, "activation": "sigmoid"}]}}


def loss(epoch: int) -> float:
    # A wobbling decay with a spike every 37 epochs and a dip every 53: extremes that
    # a naive stride would drop.
    if epoch % 37 == 0:
        return 9.0 + epoch / 1e4
    if epoch % 53 == 0:
        return -1.0 - epoch / 1e4
    return 1.0 / epoch + 0.01 * math.sin(epoch)


@pytest.fixture(params=["rows", "archive"])
def job_with(request, session, user):
    def make(epochs: int) -> Job:
        status = "running" if request.param == "rows" else "succeeded"
        job = Job(owner_id=user().id, name="m", spec=SPEC, epochs=epochs, status=status)
        session.add(job)
        session.flush()
        insert_ignoring_duplicates(session, EpochMetric, [
            metric_row(job.id, e, [{"delta_norm": e * 10.0 + k} for k in (1, 2)],
                       train_loss=loss(e), learning_rate=0.1)
            for e in range(1, epochs + 1)])
        assert (ensure_archive(session, job) is None) == (request.param == "rows")
        return job
    return make


def test_full_read_returns_every_epoch_with_aligned_layer_columns(session, job_with):
    job = job_with(300)
    out = read_metrics(session, job)
    assert out["epoch"] == list(range(1, 301))
    assert out["train_loss"] == [loss(e) for e in range(1, 301)]
    assert [layer["delta_norm"] for layer in out["layers"]] == [
        [e * 10.0 + k for e in range(1, 301)] for k in (1, 2)]


def test_since_epoch_returns_only_later_epochs(session, job_with):
    out = read_metrics(session, job_with(50), since_epoch=45)
    assert out["epoch"] == [46, 47, 48, 49, 50]
    assert out["layers"][1]["delta_norm"] == [e * 10.0 + 2 for e in range(46, 51)]


@pytest.mark.parametrize("epochs,max_points", [(5000, 100), (3001, 1000), (200, 7)])
def test_downsampling_keeps_every_windows_min_and_max(session, job_with, epochs, max_points):
    out = read_metrics(session, job_with(epochs), max_points=max_points)
    kept = out["epoch"]
    assert len(kept) <= max_points + 1 and kept == sorted(set(kept))
    windows = max(1, max_points // 2)
    size = -(-epochs // windows)
    for start in range(1, epochs + 1, size):
        window = [loss(e) for e in range(start, min(start + size, epochs + 1))]
        in_window = [out["train_loss"][i] for i, e in enumerate(kept)
                     if start <= e < start + size]
        assert min(window) in in_window and max(window) in in_window
    # Layer columns stay aligned with the kept epochs, whichever read path was used.
    assert out["layers"][0]["delta_norm"] == [e * 10.0 + 1 for e in kept]


def test_downsampling_past_the_sparse_read_bound_stays_aligned(session, job_with):
    out = read_metrics(session, job_with(2 * SPARSE_READ_EPOCHS + 10),
                       max_points=2 * SPARSE_READ_EPOCHS + 4)
    assert SPARSE_READ_EPOCHS < len(out["epoch"]) < 2 * SPARSE_READ_EPOCHS + 10
    assert out["train_loss"] == [loss(e) for e in out["epoch"]]
    assert out["layers"][1]["delta_norm"] == [e * 10.0 + 2 for e in out["epoch"]]


def test_no_downsampling_when_under_max_points(session, job_with):
    assert read_metrics(session, job_with(40), max_points=1000)["epoch"] == list(range(1, 41))
