"""Buffered, fenced, idempotent writes of epoch telemetry.

The worker records an epoch in microseconds but a database round trip costs
milliseconds, so rows are buffered and flushed in one transaction when the buffer is
old enough (well under a second, for the live view) or big enough. A batch that meets
rows already stored under the (job, epoch) key is written again skipping them, so a
resumed run that recomputes epochs never writes a second copy. A flush that meets a
database error keeps its rows and is tried again with backoff; the heartbeat stops the
worker if the outage outlasts the lease.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from jobs.db import session_scope
from jobs.db_retry import Backoff, is_transient, retry_db
from jobs.lease import Lease, hold
from jobs.layer_values import pack, packed
from jobs.models import EpochMetric
from jobs.pg_arrays import bytea_array, float8_array, int4_array
from mlp import EpochRecord, LayerRecord
from mlp.records import LAYER_FIELDS, layer_table

log = logging.getLogger(__name__)

EPOCH_FIELDS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate",
                "seconds")


def finite_or_none(value: float | None) -> float | None:
    # SQLite cannot store NaN and JSON cannot carry it: non-finite becomes NULL.
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def insert_ignoring_duplicates(session: Session, model, rows: list[dict]) -> None:
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(model).on_conflict_do_nothing(), rows)


EPOCH_COLUMNS = ("job_id", "epoch") + EPOCH_FIELDS + ("layers",)
UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE for a duplicate key


@dataclass(frozen=True)
class RowArrays:
    """A batch of epoch rows as arrays: see record_arrays."""

    epochs: np.ndarray  # (E,) int64
    values: np.ndarray  # (E, len(EPOCH_FIELDS)) float64, NaN for None
    layers: np.ndarray  # (E, L, len(LAYER_FIELDS)) float64, NaN for None

    def __len__(self) -> int:
        return len(self.epochs)

    @property
    def size(self) -> int:
        """How many numbers it holds."""
        return self.epochs.size + self.values.size + self.layers.size


def record_from_dict(record: dict) -> EpochRecord:
    """The engine's record back from its `to_dict()` (tests and tools hold dicts), its
    layers in layer order (rows store them by position)."""
    layers = [LayerRecord(**layer) for layer in sorted(record.get("layers", ()),
                                                       key=lambda layer: layer["layer"])]
    return EpochRecord(**{**record, "layers": layers})


# A record's fields read in C: a Python loop of getattr calls cost a 500-epoch flush 1 ms.
_EPOCH, _EPOCH_VALUES = attrgetter("epoch"), attrgetter(*EPOCH_FIELDS)


def record_arrays(records: list[EpochRecord]) -> RowArrays:
    """The records' rows as arrays, NaN for None. One numpy pass over all of a flush's
    layers (`layer_table`); the rows follow from these. Every record has the same layers
    (one network's)."""
    epochs = np.fromiter(map(_EPOCH, records), dtype=np.int64, count=len(records))
    values = np.array(list(map(_EPOCH_VALUES, records)),
                      dtype=np.float64).reshape(-1, len(EPOCH_FIELDS))
    table = layer_table(records)
    depth = len(records[0].layers) if records else 0
    if len(table) != depth * len(records):
        raise ValueError("the records of one flush have different numbers of layers")
    return RowArrays(epochs, values, table[:, 1:].reshape(len(records), depth, len(LAYER_FIELDS)))


def record_tuples(job_id: str, records: list[EpochRecord]) -> list[tuple]:
    """Epoch rows as tuples in EPOCH_COLUMNS order, with None for non-finite values.

    Built column-wise with numpy: `EpochRecord.to_dict()` deep-copies every value, and
    even a Python call per value (finite_or_none) cost a flush of 500 XOR epochs more
    than the 500 epochs' training.
    """
    return row_tuples(job_id, record_arrays(records))


def row_tuples(job_id: str, arrays: RowArrays) -> list[tuple]:
    """record_tuples from the records' `record_arrays`."""
    rows = np.empty((len(arrays), len(EPOCH_COLUMNS)), dtype=object)
    rows[:, 0] = job_id
    rows[:, 1] = arrays.epochs.astype(object)
    cells = arrays.values.astype(object)  # Python floats
    cells[~np.isfinite(arrays.values)] = None
    rows[:, 2:-1] = cells
    rows[:, -1] = pack(arrays.layers)
    return list(map(tuple, rows.tolist()))


def insert_statements(dialect: str, job_id: str, arrays: RowArrays, *,
                      skip_duplicates: bool) -> list[tuple[str, tuple | list]]:
    """Driver-level INSERTs of the epoch rows in `arrays` (`record_arrays`); with
    `skip_duplicates` they ignore (job, epoch) rows already stored.

    PostgreSQL gets INSERT ... SELECT FROM unnest(column arrays): a single round trip
    whatever the row count (an executemany costs one per row, 0.2 ms each), with each
    column one binary array built by numpy (jobs/pg_arrays.py) and the job id one
    parameter. Without `skip_duplicates` the server saves ON CONFLICT's speculative
    insertion, about 40 % of its time per row; a duplicate then fails the statement.
    SQLite gets the driver's own executemany, a loop in C, always ignoring duplicates.
    """
    if not len(arrays):
        return []
    table = EpochMetric.__tablename__
    if dialect == "postgresql":
        columns = [int4_array(arrays.epochs), *map(float8_array, arrays.values.T),
                   bytea_array(packed(arrays.layers))]
        return [(f"INSERT INTO {table} ({', '.join(EPOCH_COLUMNS)}) SELECT %s, * FROM "
                 f"unnest({', '.join(['%b'] * len(columns))})"
                 + (" ON CONFLICT DO NOTHING" if skip_duplicates else ""), (job_id, *columns))]
    marks = ", ".join("?" * len(EPOCH_COLUMNS))
    return [(f"INSERT OR IGNORE INTO {table} ({', '.join(EPOCH_COLUMNS)}) VALUES ({marks})",
             row_tuples(job_id, arrays))]


class WrittenRows:
    """The rows a MetricBuffer committed, kept as their arrays (`record_arrays`) while they
    hold at most `max_values` numbers (past that, forgotten: None).

    The worker archives a job it trained from scratch to success from these instead of
    reading its thousands of rows back (jobs/metric_archive.py): for XOR's 2000 epochs
    that read was about 50 ms of the worker's time after every job. Added to only after a
    commit, in epoch order (flushes run one at a time, a failed one's rows go back in
    front), so each row is kept once.
    """

    def __init__(self, max_values: int):
        self._parts: list[RowArrays] | None = []
        self._room = max_values

    def add(self, arrays: RowArrays) -> None:
        """Keep the rows of `arrays` (a flush's; nothing is copied or computed here)."""
        if self._parts is None:
            return
        self._room -= arrays.size
        if self._room < 0:
            self._parts = None
        elif len(arrays):
            self._parts.append(arrays)

    def rows(self) -> RowArrays | None:
        """Every kept row in the order written, non-finite values NaN as the database
        gives back the NULL it stores for them; None once over the bound."""
        if self._parts is None:
            return None
        if not self._parts:
            return RowArrays(np.empty(0, np.int64), np.empty((0, len(EPOCH_FIELDS))),
                             np.empty((0, 0, len(LAYER_FIELDS))))
        return RowArrays(np.concatenate([p.epochs for p in self._parts]),
                         _finite(np.concatenate([p.values for p in self._parts])),
                         _finite(np.concatenate([p.layers for p in self._parts])))


def write_rows(session: Session, lease: Lease, arrays: RowArrays, epoch: int) -> None:
    """The job's progress under its lease, then the rows (`record_arrays`), in the caller's
    transaction: plain inserts first; only a batch that meets stored rows pays for skipping
    them (written again, after its savepoint is rolled back, so the transaction goes on).

    Rows of these epochs are already stored after a resume (the metrics of the epochs
    after the checkpoint) or after a flush whose commit landed but whose answer was
    lost; the engine recomputes them bit for bit, so keeping the stored copy is right.
    """
    # The fenced UPDATE comes first: it locks the job row, so no other worker can take
    # the lease between the check and the inserts.
    hold(session, lease, epoch=epoch)
    if not len(arrays):
        return
    if session.get_bind().dialect.name != "postgresql":
        return _insert(session, lease.job_id, arrays, skip_duplicates=True)  # SQLite: always
    try:
        with session.begin_nested():
            _insert(session, lease.job_id, arrays, skip_duplicates=False)
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        _insert(session, lease.job_id, arrays, skip_duplicates=True)


def _insert(session: Session, job_id: str, arrays: RowArrays, *, skip_duplicates: bool) -> None:
    # The connection is asked for here: a savepoint is only emitted when it is.
    conn = session.connection()
    for statement in insert_statements(conn.dialect.name, job_id, arrays,
                                       skip_duplicates=skip_duplicates):
        conn.exec_driver_sql(*statement)


def _finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.nan)


class MetricBuffer:
    """Collects epoch records and flushes them by time and by count.

    `add` only appends the engine's record: rows are built at flush time, once per
    batch of epochs, so an unflushed epoch costs the training loop a list append. (The
    records are held until then: the engine builds a new one every epoch.)

    With `background=True` (the worker) a due flush runs in a thread of its own while
    training goes on, one at a time: the database's work (about 10 µs per row on
    PostgreSQL) then overlaps the next epochs instead of stalling them. A failure there
    surfaces in the training thread at the next due `add` or at `flush`/`drain`: a
    transient one puts the rows back and backs off, any other (a lost lease) is raised.
    `flush` and `drain` always wait for the flush in flight first, so a checkpoint is
    never ahead of the stored metrics.
    """

    def __init__(self, factory: sessionmaker[Session], lease: Lease, *, flush_seconds: float,
                 flush_rows: int, clock=time.monotonic, background: bool = False,
                 written: WrittenRows | None = None):
        self._factory, self._lease, self.written = factory, lease, written
        self._flush_seconds, self._flush_rows, self._clock = flush_seconds, flush_rows, clock
        self._records: list[EpochRecord] = []
        self._pending: RowArrays | None = None  # what write_pending wrote, until committed
        self._last_epoch = 0
        self._last_flush = clock()
        self._backoff = Backoff(clock)
        self._background = background
        self._inflight: _BackgroundFlush | None = None

    def add(self, record: EpochRecord | dict) -> None:
        """Buffer one epoch (the engine's record, or its `to_dict()`); flush when due."""
        if isinstance(record, dict):
            record = record_from_dict(record)
        self._records.append(record)
        self._last_epoch = record.epoch
        due = (len(self._records) >= self._flush_rows
               or self._clock() - self._last_flush >= self._flush_seconds)
        if not due:
            return
        if self._background:
            self._start_background()
        elif self._backoff.ready():
            self._try_flush()

    @property
    def pending(self) -> int:
        """Epoch rows buffered, or being written, and not yet known to be committed."""
        inflight = self._inflight.records if self._inflight is not None else ()
        return len(self._records) + len(inflight)

    def settle(self) -> None:
        """Wait for the background flush in flight, if any; its failure is handled as a due
        `add` handles it (a transient one keeps the rows, any other is raised)."""
        if self._inflight is not None:
            self._collect()

    def _try_flush(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        # Keep the rows; training goes on and the next due add() tries again.
        wait = self._backoff.failed()
        log.warning("metric flush for %s failed (%s); %d epochs buffered, retry in %.2f s",
                    self._lease.job_id, exc.__class__.__name__, self.pending, wait)

    def _start_background(self) -> None:
        if self._inflight is not None:
            if self._inflight.is_alive():
                return  # one flush at a time; the rows wait for the next due add()
            self.settle()
        if not self._backoff.ready():
            return
        records, self._records = self._records, []
        self._last_flush = self._clock()
        self._inflight = _BackgroundFlush(self._write, records, records[-1].epoch)
        self._inflight.start()

    def _collect(self) -> None:
        """Join the flush in flight; on failure its rows go back in front of the buffer."""
        flush, self._inflight = self._inflight, None
        flush.join()
        if flush.error is None:
            self._backoff.succeeded()
            return
        self._records = flush.records + self._records
        if not is_transient(flush.error):
            raise flush.error
        self._failed(flush.error)

    def drain(self, progress_epoch: int, lease_lost: Callable[[], bool]) -> None:
        """Flush everything, retrying through database errors until `lease_lost()`."""
        retry_db(lambda: self.flush(progress_epoch), lease_lost=lease_lost,
                 what=f"final metric flush for {self._lease.job_id}")

    def flush(self, progress_epoch: int | None = None) -> None:
        """Write the buffered rows and the job's progress in one fenced transaction, after
        the flush in flight (if any) has finished."""
        self.settle()
        epoch = progress_epoch if progress_epoch is not None else self._last_epoch
        self._write(self._records, epoch)
        self._records = []
        self._last_flush = self._clock()
        self._backoff.succeeded()

    def _write(self, records: list[EpochRecord], epoch: int) -> None:
        """One transaction of `write_rows`."""
        arrays = record_arrays(records)
        with session_scope(self._factory) as session:
            write_rows(session, self._lease, arrays, epoch)
        if self.written is not None:
            self.written.add(arrays)

    def write_pending(self, session: Session, progress_epoch: int) -> None:
        """Write what is buffered, and the job's progress, in the caller's transaction (the
        worker's finishing one: one commit fewer at the end of every job).

        Waits for the flush in flight first. Rows stay buffered: if the caller's
        transaction fails, calling this again in the next one writes them again; once it
        has committed, `pending_committed` says so.
        """
        self.settle()
        self._pending = record_arrays(self._records)
        write_rows(session, self._lease, self._pending, progress_epoch)

    def pending_committed(self) -> None:
        """The caller's transaction of `write_pending` committed: the rows are stored."""
        if self.written is not None and self._pending is not None:
            self.written.add(self._pending)
        self._records, self._pending = [], None


class _BackgroundFlush(threading.Thread):
    """One `MetricBuffer._write` of a batch of records, off the training thread."""

    def __init__(self, write: Callable[[list[EpochRecord], int], None],
                 records: list[EpochRecord], epoch: int):
        super().__init__(name="metric-flush")
        self._write, self.records, self._epoch = write, records, epoch
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self._write(self.records, self._epoch)
        except Exception as exc:  # handed to the training thread by MetricBuffer._collect
            self.error = exc
