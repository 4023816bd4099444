"""RunningColumns: a process's copy of running jobs' columns, extended by new epochs only,
on SQLite and PostgreSQL; every read equal to reading the rows."""
from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import delete, update

from jobs.db import session_scope
from jobs.metric_reader import as_lists, read_rows
from jobs.metric_writer import LAYER_FIELDS, insert_ignoring_duplicates
from jobs.models import EpochMetric, Job
from jobs.running_columns import RunningColumns
from tests.factories import metric_row

SPEC = {"network": {"layers": [{"units": 4, "activation": "tanh"},
                               {"units": 3, "activation": "relu"},
                               {"units": 1, "activation": "sigmoid"}]},
        "record": {"every_epochs": 1}}
N_LAYERS = len(SPEC["network"]["layers"])
EPOCH_BYTES = 8 * (1 + 5 + N_LAYERS * len(LAYER_FIELDS))


@pytest.fixture
def engine(either_engine):
    return either_engine


def value(epoch: int, column: int) -> float | None:
    """A distinct value per cell; every 97th epoch's cells are NULL (non-finite)."""
    return None if epoch % 97 == 0 else epoch + column / 100 + (epoch % 7) * 1e-9


def store(session, job: Job, epochs: range) -> None:
    """Rows for `epochs`, as one flush writes them, and the job's progress."""
    insert_ignoring_duplicates(session, EpochMetric, [
        metric_row(job.id, e, [{f: value(e, 10 * k + i) for i, f in enumerate(LAYER_FIELDS)}
                               for k in range(1, N_LAYERS + 1)],
                   train_loss=value(e, 0), val_loss=value(e, 1), train_accuracy=value(e, 2),
                   learning_rate=0.1)
        for e in epochs])
    job.epoch = epochs[-1]
    session.flush()


@pytest.fixture
def running_job(session, user):
    def make(epochs: int) -> Job:
        job = Job(owner_id=user().id, name="r", spec=SPEC, epochs=10**6, status="running")
        session.add(job)
        session.flush()
        store(session, job, range(1, epochs + 1))
        return job
    return make


@pytest.fixture
def running():
    return RunningColumns()


@pytest.mark.parametrize("since_epoch", [0, 1, 700, 1100])
@pytest.mark.parametrize("max_points", [None, 10, 999, 5000])
def test_every_read_equals_the_rows(session, running_job, running, since_epoch, max_points):
    job = running_job(1200)
    columns = running.read(session, job, since_epoch, max_points)
    assert columns is not None and job.id in running
    assert as_lists(columns) == read_rows(session, job, since_epoch, max_points)


def test_a_second_read_fetches_only_the_epochs_after_the_copy(session, running_job, running):
    job = running_job(1200)
    running.read(session, job)
    # Rows the copy holds are never read again: with them gone from the table, the copy
    # still has them, and the new flush's epochs join them.
    session.execute(delete(EpochMetric).where(EpochMetric.epoch <= 1000))
    store(session, job, range(1201, 1300))
    columns = as_lists(running.read(session, job))
    assert columns["epoch"] == list(range(1, 1300))
    assert columns["layers"][2]["update_ratio"] == [value(e, 34) for e in range(1, 1300)]
    assert columns["train_loss"][96] is None and columns["nonfinite"] is True


def test_a_copy_starts_at_its_first_read_and_reads_older_epochs_once(session, running_job,
                                                                   running):
    job = running_job(1200)
    assert running.read(session, job, since_epoch=1150)["epoch"].tolist() == list(
        range(1151, 1201))
    # What the copy holds is not read again, and what is older is read once.
    session.execute(delete(EpochMetric).where(EpochMetric.epoch > 1150))
    whole = as_lists(running.read(session, job))
    assert whole["epoch"] == list(range(1, 1201))
    assert whole["layers"][0]["weight_grad_norm"] == [value(e, 10) for e in range(1, 1201)]
    session.execute(delete(EpochMetric))
    assert running.read(session, job, since_epoch=10)["epoch"].tolist() == list(range(11, 1201))


def test_rows_are_read_only_when_the_job_has_progressed(session, running_job, running,
                                                        reads):
    job = running_job(1200)
    reads.clear()
    running.read(session, job, since_epoch=1190)
    assert len(reads) == 1  # the epochs after the copy's last, with their layers
    reads.clear()
    for since in (1195, 1100, 1100):
        running.read(session, job, since_epoch=since)
    assert len(reads) == 1  # once for the older epochs in (1100, 1190]; nothing new
    store(session, job, range(1201, 1211))  # a flush: rows and the job's progress
    reads.clear()
    assert running.read(session, job, since_epoch=1195)["epoch"].tolist() == list(
        range(1196, 1211))
    assert len(reads) == 1


def test_a_finished_job_drops_its_copy(session, running_job, running):
    job = running_job(1200)
    running.read(session, job)
    job.status = "succeeded"
    assert running.read(session, job) is None and job.id not in running


@pytest.mark.parametrize("layers", [None, b"\0" * 8])
def test_an_epoch_without_every_layer_is_left_to_the_rows(session, running_job, running, layers):
    job = running_job(1200)
    session.execute(update(EpochMetric).where(EpochMetric.epoch == 600).values(layers=layers))
    assert running.read(session, job) is None and job.id not in running


def test_copies_stay_within_the_bound_dropping_the_least_recently_read(session, running_job):
    # Room for two copies of 1200 epochs (a first read allocates what it holds), not three.
    running = RunningColumns(max_bytes=int(2.5 * 1200 * EPOCH_BYTES))
    a, b, c = (running_job(1200) for _ in range(3))
    for job in (a, b, a, c):
        assert running.read(session, job) is not None
        assert running.nbytes <= running.max_bytes
    assert (a.id in running, b.id in running, c.id in running) == (True, False, True)


def test_room_is_reserved_before_a_copy_grows(session, running_job):
    """Two reads growing two copies at once: the second sees the first's reservation
    (before either has grown) and drops it, rather than both growing past the bound."""
    running = RunningColumns(max_bytes=1500 * EPOCH_BYTES)
    a, b = running_job(10), running_job(10)
    copy_a, copy_b = running._copy_for(a, 0), running._copy_for(b, 0)
    running._make_room(a.id, copy_a, 1000)
    running._make_room(b.id, copy_b, 1000)
    assert (a.id in running, b.id in running) == (False, True)
    assert running.nbytes <= running.max_bytes


def test_a_copy_dropped_while_in_use_takes_no_room_from_others(session, running_job):
    running = RunningColumns(max_bytes=1500 * EPOCH_BYTES)
    a, b = running_job(10), running_job(10)
    copy_a, copy_b = running._copy_for(a, 0), running._copy_for(b, 0)
    running._make_room(b.id, copy_b, 1000)
    running.forget(a.id)  # evicted while a read still extends it
    running._make_room(a.id, copy_a, 1400)
    assert b.id in running
    running.forget(b.id, copy_a)  # not b's copy: b's stays
    assert b.id in running


def test_a_history_bigger_than_the_bound_is_read_from_the_rows(session, running_job):
    running = RunningColumns(max_bytes=1000 * EPOCH_BYTES)
    job = running_job(1200)
    assert running.read(session, job) is None and running.nbytes == 0


def test_an_idle_copy_is_dropped(session, running_job):
    now = [0.0]
    running = RunningColumns(idle_s=60, clock=lambda: now[0])
    a, b = running_job(1200), running_job(1200)
    running.read(session, a)
    now[0] = 61
    running.read(session, b)
    assert a.id not in running and b.id in running


def test_a_forked_child_starts_empty(session, running_job, running):
    running.read(session, running_job(1200))
    pid = os.fork()
    if pid == 0:  # the child: its copies are the parent's, whose locks it cannot release
        os._exit(0 if running.nbytes == 0 else 1)
    assert os.waitpid(pid, 0)[1] == 0 and running.nbytes > 0


def test_readers_in_threads_see_whole_prefixes_while_flushes_commit(session_factory, user,
                                                                    session):
    """Readers, each in its own session, while a writer commits 40 flushes: every read
    is a gap-free run of epochs with their own values, and the last one is complete."""
    job = Job(owner_id=user().id, name="r", spec=SPEC, epochs=10**6, status="running")
    session.add(job)
    session.commit()
    with session_scope(session_factory) as s:
        store(s, s.get(Job, job.id), range(1, 201))
    running, done, seen, errors = RunningColumns(), threading.Event(), [], []

    def read_until_done():
        try:
            while not done.is_set():
                with session_scope(session_factory) as s:
                    columns = running.read(s, s.get(Job, job.id))
                epochs = columns["epoch"].tolist()
                assert epochs == list(range(1, len(epochs) + 1))
                assert as_lists(columns)["layers"][1]["delta_norm"] == [
                    value(e, 22) for e in epochs]
                seen.append(len(epochs))
        except Exception as exc:  # handed to the test's thread
            errors.append(exc)

    readers = [threading.Thread(target=read_until_done) for _ in range(3)]
    for thread in readers:
        thread.start()
    for start in range(201, 2201, 50):
        with session_scope(session_factory) as s:
            store(s, s.get(Job, job.id), range(start, start + 50))
    done.set()
    for thread in readers:
        thread.join()
    assert not errors, errors
    with session_scope(session_factory) as s:
        assert running.read(s, s.get(Job, job.id))["epoch"].tolist() == list(range(1, 2201))
    assert len(set(seen)) > 2  # the readers saw the history grow
