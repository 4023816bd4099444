"""Metric rows from the engine's records, written exactly, once, on SQLite and PostgreSQL."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

import mlp
from jobs import metric_writer
from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.lease import claim, finish
from jobs.layer_values import unpack
from jobs.metric_writer import (EPOCH_COLUMNS, EPOCH_FIELDS, LAYER_FIELDS, MetricBuffer,
                                WrittenRows, record_arrays, record_from_dict,
                                record_tuples)
from jobs.models import Base, EpochMetric, Job
from tests.factories import epoch_rows
from tests.integration.services import fresh_postgres_database
from tests.jobs.training_fixtures import bare_job

# Values a text round trip could bend: shortest reprs, subnormals, huge and tiny numbers.
AWKWARD = [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -2.5e-17, 123456789.123456789]


def record(epoch: int) -> mlp.EpochRecord:
    value = AWKWARD[epoch % len(AWKWARD)]
    layers = [mlp.LayerRecord(layer=1, weight_grad_norm=value, bias_grad_norm=float("nan"),
                              delta_norm=float("inf"), weight_norm=-value, update_ratio=0.0,
                              dead_fraction=None, saturated_fraction=0.25),
              mlp.LayerRecord(layer=2, weight_grad_norm=1.0, bias_grad_norm=2.0,
                              delta_norm=3.0, weight_norm=4.0, update_ratio=5.0)]
    return mlp.EpochRecord(epoch=epoch, train_loss=value, val_loss=None,
                           train_accuracy=float("-inf"), val_accuracy=0.5,
                           learning_rate=0.01, seconds=1e-6, layers=layers)


def test_rows_follow_the_column_order_and_turn_non_finite_into_null():
    [row] = record_tuples("job", [record(1)])
    row = dict(zip(EPOCH_COLUMNS, row))
    layers = unpack([row.pop("layers")], 2)[0]
    assert row == {"job_id": "job", "epoch": 1, "train_loss": 1 / 3, "val_loss": None,
                   "train_accuracy": None, "val_accuracy": 0.5, "learning_rate": 0.01,
                   "seconds": 1e-6}
    first = dict(zip(LAYER_FIELDS, layers[0]))
    assert np.isnan(first["bias_grad_norm"]) and np.isnan(first["delta_norm"])  # nan, inf
    assert first["weight_norm"] == -1 / 3 and np.isnan(first["dead_fraction"])  # None
    assert first["saturated_fraction"] == 0.25
    assert layers[1].tolist()[:5] == [1.0, 2.0, 3.0, 4.0, 5.0] and np.isnan(layers[1][5:]).all()


def test_a_dict_record_gives_the_same_rows_as_the_engine_record():
    original = record(3)
    assert record_tuples("j", [record_from_dict(original.to_dict())]) == \
        record_tuples("j", [original])
    assert tuple(epoch_rows("j", original.to_dict()).values()) == \
        record_tuples("j", [original])[0]


def _stored(factory, job_id):
    with session_scope(factory) as session:
        rows = session.execute(select(*(getattr(EpochMetric, c) for c in EPOCH_COLUMNS))
                               .where(EpochMetric.job_id == job_id)
                               .order_by(EpochMetric.epoch)).all()
        progress = session.get(Job, job_id).epoch
    return [tuple(r) for r in rows], progress


def _same_as_stored(kept, rows: list[tuple]) -> bool:
    """The kept arrays (WrittenRows.rows) hold the stored rows' values, NULL as NaN."""
    stored = np.array([row[2:-1] for row in rows], dtype=np.float64)
    return (kept.epochs.tolist() == [row[1] for row in rows]
            and np.array_equal(kept.values, stored, equal_nan=True)
            and np.array_equal(kept.layers, unpack([row[-1] for row in rows], 2),
                               equal_nan=True))


def _round_trip(factory, background=False):
    job_id = bare_job(factory, "metric-writer")
    with session_scope(factory) as session:
        lease = claim(session, job_id, "w1", ttl_s=60, max_attempts=3)
    records = [record(e) for e in range(1, 8)]
    buffer = MetricBuffer(factory, lease, flush_seconds=60, flush_rows=4, background=background,
                          written=WrittenRows(10**6))
    for r in records:
        buffer.add(r)
    buffer.settle()
    assert buffer.pending == 3  # four were flushed by count
    if background:  # the first four are committed, with their progress, before any drain
        stored = _stored(factory, job_id)
        assert (len(stored[0]), stored[1]) == (4, 4)
    buffer.drain(7, lambda: False)
    expected = record_tuples(job_id, records)
    assert _stored(factory, job_id) == (expected, 7)
    # What the buffer kept of its commits is what the database gives back, NULL as NaN.
    assert _same_as_stored(buffer.written.rows(), _stored(factory, job_id)[0])
    # A resumed run recomputes epochs 5-7 (here with other values) and goes on to 9: the
    # first copy of 5-7 stays, 8 and 9 are added (PostgreSQL: the plain insert meets the
    # stored rows and the batch is written again skipping them).
    again = MetricBuffer(factory, lease, flush_seconds=60, flush_rows=100,
                         written=WrittenRows(10**6))
    resumed = [record(e) for e in range(5, 10)]
    for r in resumed:
        r.train_loss = math.pi
        again.add(r)
    again.drain(9, lambda: False)
    expected = record_tuples(job_id, records + resumed[3:])
    assert _stored(factory, job_id) == (expected, 9)
    # Written once, through the retry that skips stored rows (PostgreSQL) or not; these
    # are this buffer's values, not the stored ones: why a resumed job's archive is read
    # from its rows.
    kept = again.written.rows()
    assert kept.epochs.tolist() == [5, 6, 7, 8, 9] and kept.layers.shape == (5, 2, 7)
    assert (kept.values[:, 0] == math.pi).all()  # train_loss
    return expected


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_sqlite_stores_every_value_exactly_and_once(session_factory, background):
    _round_trip(session_factory, background)


@pytest.fixture
def postgres_factory():
    with fresh_postgres_database() as url:
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        yield make_sessionmaker(engine)
        engine.dispose()


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_postgres_stores_every_value_exactly_and_once(postgres_factory, background):
    expected = _round_trip(postgres_factory, background)
    assert len(expected) == 9 and len(EPOCH_FIELDS) + 3 == len(expected[0])



def test_flush_waits_for_the_background_flush_in_flight(session_factory):
    """A checkpoint flushes first: it must find every earlier row committed, including those
    a slow background flush was still writing."""
    job_id = bare_job(session_factory, "slow-writer")
    with session_scope(session_factory) as session:
        lease = claim(session, job_id, "w1", ttl_s=60, max_attempts=3)

    def slow_factory():
        time.sleep(0.3)
        return session_factory()

    buffer = MetricBuffer(slow_factory, lease, flush_seconds=60, flush_rows=2, background=True)
    for epoch in (1, 2, 3):
        buffer.add(record(epoch))  # the second add starts a 0.3 s background flush
    assert buffer.pending == 3
    buffer.flush(3)
    assert buffer.pending == 0
    epochs, progress = _stored(session_factory, job_id)
    assert [row[1] for row in epochs] == [1, 2, 3] and progress == 3


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_pending_rows_join_the_callers_transaction_and_survive_its_rollback(postgres_factory,
                                                                            background):
    """The worker's finishing transaction writes the last rows with the final status: a
    failed attempt at it stores nothing and keeps the rows for the next attempt."""
    job_id = bare_job(postgres_factory, "finisher")
    with session_scope(postgres_factory) as session:
        lease = claim(session, job_id, "w1", ttl_s=60, max_attempts=3)
    buffer = MetricBuffer(postgres_factory, lease, flush_seconds=60, flush_rows=3,
                          background=background)
    records = [record(e) for e in range(1, 6)]
    for r in records:
        buffer.add(r)  # the third starts a flush; the write below waits for it
    with pytest.raises(RuntimeError), session_scope(postgres_factory) as session:
        buffer.write_pending(session, 5)
        raise RuntimeError("the finishing write failed")
    assert _stored(postgres_factory, job_id)[0] == record_tuples(job_id, records[:3])
    with session_scope(postgres_factory) as session:
        buffer.write_pending(session, 5)
    assert _stored(postgres_factory, job_id) == (record_tuples(job_id, records), 5)


def test_the_finishing_write_keeps_stored_rows_and_the_rest_of_its_transaction(
        postgres_factory):
    """A resumed job's last epochs may be stored already: the plain insert meets them, its
    savepoint is rolled back and the batch written again skipping them, and the finishing
    transaction goes on to the final status (on PostgreSQL a failed statement outside a
    savepoint would have aborted it)."""
    job_id = bare_job(postgres_factory, "resumed-finisher")
    with session_scope(postgres_factory) as session:
        lease = claim(session, job_id, "w1", ttl_s=60, max_attempts=3)
    stored = [record(e) for e in (1, 2, 3)]
    first = MetricBuffer(postgres_factory, lease, flush_seconds=60, flush_rows=100)
    for r in stored:
        first.add(r)
    first.flush(3)
    resumed = [record(e) for e in (2, 3, 4, 5)]
    buffer = MetricBuffer(postgres_factory, lease, flush_seconds=60, flush_rows=100)
    for r in resumed:
        r.train_loss = math.pi
        buffer.add(r)
    with session_scope(postgres_factory) as session:
        buffer.write_pending(session, 5)
        assert finish(session, lease, status="succeeded")
    assert _stored(postgres_factory, job_id) == (record_tuples(job_id, stored + resumed[2:]), 5)
    with session_scope(postgres_factory) as session:
        assert session.get(Job, job_id).status == "succeeded"


def test_another_integrity_error_is_raised_and_the_rows_stay_buffered(postgres_factory,
                                                                     monkeypatch):
    """Only a duplicate key is answered by skipping stored rows: any other constraint
    failure (here a NULL epoch) fails the flush, stores nothing and keeps the rows."""
    job_id = bare_job(postgres_factory, "bad-rows")
    with session_scope(postgres_factory) as session:
        lease = claim(session, job_id, "w1", ttl_s=60, max_attempts=3)
    buffer = MetricBuffer(postgres_factory, lease, flush_seconds=60, flush_rows=100)
    for epoch in (1, 2):
        buffer.add(record(epoch))
    bad = ("INSERT INTO epoch_metrics (job_id, epoch) VALUES (%s, NULL)", (job_id,))
    # The skipping retry would write nothing: taking it would hide the failure.
    monkeypatch.setattr(metric_writer, "insert_statements",
                        lambda *args, skip_duplicates: [] if skip_duplicates else [bad])
    with pytest.raises(IntegrityError) as failure:
        buffer.flush(2)
    assert failure.value.orig.sqlstate == "23502"  # not_null_violation
    assert buffer.pending == 2 and _stored(postgres_factory, job_id) == ([], 0)


def test_written_rows_are_kept_once_after_a_failed_finish_and_forgotten_past_their_bound(
        session_factory):
    job_id = bare_job(session_factory, "kept-rows")
    with session_scope(session_factory) as session:
        lease = claim(session, job_id, "w1", ttl_s=60, max_attempts=3)
    buffer = MetricBuffer(session_factory, lease, flush_seconds=60, flush_rows=2,
                          written=WrittenRows(10**6))
    for epoch in (1, 2, 3):
        buffer.add(record(epoch))
    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        buffer.write_pending(session, 3)
        raise RuntimeError("the finishing write failed")
    with session_scope(session_factory) as session:
        buffer.write_pending(session, 3)
    buffer.pending_committed()
    assert _same_as_stored(buffer.written.rows(), _stored(session_factory, job_id)[0])
    assert buffer.written.rows().epochs.tolist() == [1, 2, 3]
    # Per record: its epoch, six epoch values and two layers of seven: 21 numbers.
    bounded = WrittenRows(max_values=2 * 21)
    bounded.add(record_arrays([record(1), record(2)]))
    assert len(bounded.rows()) == 2
    bounded.add(record_arrays([record(3)]))
    assert bounded.rows() is None
    bounded.add(record_arrays([record(4)]))
    assert bounded.rows() is None
