"""Buffered, fenced, idempotent writes of epoch telemetry.

The worker records an epoch in microseconds but a database round trip costs
milliseconds, so rows are buffered and flushed in one transaction when the buffer is
old enough (well under a second, for the live view) or big enough. Inserts ignore
conflicts on the (job, epoch[, layer]) keys, so a resumed run that recomputes epochs
never writes a second copy. A flush that meets a database error keeps its rows and is
tried again with backoff; the heartbeat stops the worker if the outage outlasts the lease.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import numpy as np
from sqlalchemy import Integer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from jobs.db import session_scope
from jobs.db_retry import Backoff, is_transient, retry_db
from jobs.lease import Lease, hold
from jobs.models import EpochMetric, LayerMetric
from jobs.pg_arrays import float8_array, int4_array
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


def epoch_rows(job_id: str, record: dict) -> tuple[dict, list[dict]]:
    """Split an EpochRecord.to_dict() into one epoch row and its layer rows."""
    epoch = record["epoch"]
    row = {"job_id": job_id, "epoch": epoch}
    row.update({f: finite_or_none(record.get(f)) for f in EPOCH_FIELDS})
    layers = [{"job_id": job_id, "epoch": epoch, "layer": layer["layer"],
               **{f: finite_or_none(layer.get(f)) for f in LAYER_FIELDS}}
              for layer in record["layers"]]
    return row, layers


def insert_ignoring_duplicates(session: Session, model, rows: list[dict]) -> None:
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(model).on_conflict_do_nothing(), rows)


EPOCH_COLUMNS = ("job_id", "epoch") + EPOCH_FIELDS
LAYER_COLUMNS = ("job_id", "epoch", "layer") + LAYER_FIELDS
UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE for a duplicate key
# (keys, values) of a batch's epoch rows, then of its layer rows: see record_arrays.
RowArrays = tuple[tuple[list[np.ndarray], np.ndarray], tuple[list[np.ndarray], np.ndarray]]


def record_from_dict(record: dict) -> EpochRecord:
    """The engine's record back from its `to_dict()` (tests and tools hold dicts)."""
    layers = [LayerRecord(**layer) for layer in record.get("layers", ())]
    return EpochRecord(**{**record, "layers": layers})


def record_arrays(records: list[EpochRecord]) -> RowArrays:
    """(keys, values) of the records' epoch rows and of their layer rows: the key columns
    (epoch; epoch and layer) as int64 arrays, and the values as a (rows, fields) float64
    array in EPOCH_FIELDS / LAYER_FIELDS order, NaN for None. One numpy pass over all of
    a flush's layers (`layer_table`); the rows of either table follow from these."""
    epochs = np.array([r.epoch for r in records], dtype=np.int64)
    values = np.array([[getattr(r, f) for f in EPOCH_FIELDS] for r in records],
                      dtype=np.float64).reshape(-1, len(EPOCH_FIELDS))
    table = layer_table(records)
    layer_keys = [np.repeat(epochs, [len(r.layers) for r in records]), table[:, 0].astype(np.int64)]
    return ([epochs], values), (layer_keys, table[:, 1:])


def record_tuples(job_id: str, records: list[EpochRecord]) -> tuple[list[tuple], list[tuple]]:
    """Epoch rows and layer rows, as tuples in EPOCH_COLUMNS / LAYER_COLUMNS order, with
    None for non-finite values.

    Built column-wise with numpy: `EpochRecord.to_dict()` deep-copies every value, and
    even a Python call per value (finite_or_none) cost a flush of 500 XOR epochs more
    than the 500 epochs' training.
    """
    return row_tuples(job_id, record_arrays(records))


def row_tuples(job_id: str, arrays: RowArrays) -> tuple[list[tuple], list[tuple]]:
    """record_tuples from the records' `record_arrays`."""
    epochs, layers = arrays
    return _tuples(job_id, *epochs), _tuples(job_id, *layers)


def _tuples(job_id: str, keys: list[np.ndarray], values: np.ndarray) -> list[tuple]:
    """Rows (job_id, *keys, *values) as tuples of Python objects; non-finite values None."""
    rows = np.empty((len(values), 1 + len(keys) + values.shape[1]), dtype=object)
    rows[:, 0] = job_id
    for i, key in enumerate(keys):
        rows[:, 1 + i] = key.astype(object)
    cells = values.astype(object)  # Python floats
    cells[~np.isfinite(values)] = None
    rows[:, 1 + len(keys):] = cells
    return list(map(tuple, rows.tolist()))


def insert_statements(dialect: str, job_id: str, arrays: RowArrays, *,
                      skip_duplicates: bool) -> list[tuple[str, tuple | list]]:
    """Driver-level INSERTs of the epoch and layer rows in `arrays` (`record_arrays`);
    with `skip_duplicates` they ignore (job, epoch[, layer]) rows already stored.

    PostgreSQL gets INSERT ... SELECT FROM unnest(column arrays): a single round trip per
    table whatever the row count (an executemany costs one per row, 0.2 ms each), with
    each column one binary array built by numpy (jobs/pg_arrays.py) and the job id one
    parameter. Without `skip_duplicates` the server saves ON CONFLICT's speculative
    insertion, about 40 % of its time per row; a duplicate then fails the statement.
    SQLite gets the driver's own executemany, a loop in C, always ignoring duplicates.
    """
    if not len(arrays[0][1]):
        return []
    if dialect == "postgresql":
        return [_pg_insert(model, columns, job_id, [*keys, *values.T], skip_duplicates)
                for model, columns, (keys, values) in zip(
                    (EpochMetric, LayerMetric), (EPOCH_COLUMNS, LAYER_COLUMNS), arrays)]
    statements = []
    for model, columns, rows in zip((EpochMetric, LayerMetric), (EPOCH_COLUMNS, LAYER_COLUMNS),
                                    row_tuples(job_id, arrays)):
        if rows:
            marks = ", ".join("?" * len(columns))
            statements.append((f"INSERT OR IGNORE INTO {model.__tablename__} "
                               f"({', '.join(columns)}) VALUES ({marks})", rows))
    return statements


def _pg_insert(model, columns: tuple[str, ...], job_id: str, values: list[np.ndarray],
               skip_duplicates: bool) -> tuple[str, tuple] | None:
    if not len(values[0]):
        return None
    arrays = [int4_array(v) if isinstance(model.__table__.c[c].type, Integer) else float8_array(v)
              for c, v in zip(columns[1:], values)]
    return (f"INSERT INTO {model.__tablename__} ({', '.join(columns)}) SELECT %s, * FROM "
            f"unnest({', '.join(['%b'] * len(arrays))})"
            + (" ON CONFLICT DO NOTHING" if skip_duplicates else ""),
            (job_id, *arrays))


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
        self._room -= sum(len(values) * (len(keys) + values.shape[1]) for keys, values in arrays)
        if self._room < 0:
            self._parts = None
        else:
            self._parts.append(arrays)

    def tables(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(epoch, *EPOCH_FIELDS) rows and (epoch, layer, *LAYER_FIELDS) rows as float64
        tables in the order written, non-finite values NaN as the database gives back the
        NULL it stores for them; None once over the bound."""
        if self._parts is None:
            return None
        tables = []
        # The epoch rows' one key (epoch), then the layer rows' two (epoch, layer).
        for i, (n_keys, width) in enumerate(((1, len(EPOCH_FIELDS)), (2, len(LAYER_FIELDS)))):
            keys = [np.concatenate([p[i][0][k] for p in self._parts] or [np.empty(0)])
                    for k in range(n_keys)]
            values = np.concatenate([p[i][1] for p in self._parts] or [np.empty((0, width))])
            tables.append(np.column_stack([*keys, np.where(np.isfinite(values), values,
                                                            np.nan)]))
        return tuple(tables)


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
        """One transaction: plain inserts first; only a batch that meets stored rows pays
        for skipping them (it is written again, skipping them).

        Rows of these epochs are already stored after a resume (the metrics of the epochs
        after the checkpoint) or after a flush whose commit landed but whose answer was
        lost; the engine recomputes them bit for bit, so keeping the stored copy is right.
        """
        arrays = record_arrays(records)
        for skip_duplicates in (False, True):
            try:
                with session_scope(self._factory) as session:
                    self._write_rows(session, arrays, epoch, skip_duplicates=skip_duplicates)
                break
            except IntegrityError as exc:
                if skip_duplicates or getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
                    raise
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
        self._write_rows(session, self._pending, progress_epoch, skip_duplicates=True)

    def pending_committed(self) -> None:
        """The caller's transaction of `write_pending` committed: the rows are stored."""
        if self.written is not None and self._pending is not None:
            self.written.add(self._pending)
        self._records, self._pending = [], None

    def _write_rows(self, session: Session, arrays: RowArrays, epoch: int, *,
                    skip_duplicates: bool) -> None:
        # The fenced UPDATE comes first: it locks the job row, so no other worker can
        # take the lease between the check and the inserts.
        hold(session, self._lease, epoch=epoch)
        conn = session.connection()
        for statement in insert_statements(conn.dialect.name, self._lease.job_id, arrays,
                                           skip_duplicates=skip_duplicates):
            if statement is not None:
                conn.exec_driver_sql(*statement)


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
