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
import sys
import time
from collections.abc import Callable

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from jobs.db import session_scope
from jobs.db_retry import Backoff, is_transient, retry_db
from jobs.lease import Lease, hold
from jobs.models import EpochMetric, LayerMetric
from mlp import EpochRecord, LayerRecord

log = logging.getLogger(__name__)

EPOCH_FIELDS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate",
                "seconds")
LAYER_FIELDS = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "weight_norm",
                "update_ratio", "dead_fraction", "saturated_fraction")


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
_MAX_FLOAT = sys.float_info.max
_PG = postgresql.dialect()


def record_from_dict(record: dict) -> EpochRecord:
    """The engine's record back from its `to_dict()` (tests and tools hold dicts)."""
    layers = [LayerRecord(**layer) for layer in record.get("layers", ())]
    return EpochRecord(**{**record, "layers": layers})


def record_tuples(job_id: str, records: list[EpochRecord]) -> tuple[list[tuple], list[tuple]]:
    """Epoch rows and layer rows, as tuples in EPOCH_COLUMNS / LAYER_COLUMNS order.

    Reads the records' attributes directly: `EpochRecord.to_dict()` (dataclasses.asdict)
    deep-copies every value and cost more than an XOR epoch itself.
    """
    def clean(v):  # finite_or_none, inlined for speed; NaN fails both comparisons
        return float(v) if v is not None and -_MAX_FLOAT <= v <= _MAX_FLOAT else None

    epochs, layers = [], []
    for r in records:
        epochs.append((job_id, int(r.epoch), clean(r.train_loss), clean(r.val_loss),
                       clean(r.train_accuracy), clean(r.val_accuracy),
                       clean(r.learning_rate), clean(r.seconds)))
        layers.extend((job_id, int(r.epoch), int(la.layer), clean(la.weight_grad_norm),
                       clean(la.bias_grad_norm), clean(la.delta_norm), clean(la.weight_norm),
                       clean(la.update_ratio), clean(la.dead_fraction),
                       clean(la.saturated_fraction)) for la in r.layers)
    return epochs, layers


def insert_statement(dialect: str, model, columns: tuple[str, ...], rows: list[tuple]
                     ) -> tuple[str, tuple | list] | None:
    """One driver-level INSERT of many rows that ignores (job, epoch[, layer]) duplicates.

    PostgreSQL gets INSERT ... SELECT FROM unnest(column arrays): a single round trip
    whatever the row count (an executemany costs one per row, 0.2 ms each). The arrays go
    as text literals: psycopg's array dumper inspects every element and cost more than the
    insert. The first column (the job id) is one parameter. SQLite gets the driver's own
    executemany, a loop in C.
    """
    if not rows:
        return None
    names = ", ".join(columns)
    if dialect == "postgresql":
        table = model.__table__
        arrays = ", ".join(f"%s::{table.c[c].type.compile(_PG)}[]" for c in columns[1:])
        values = [rows[0][0]] + [_pg_array(col) for col in list(zip(*rows))[1:]]
        return (f"INSERT INTO {table.name} ({names}) SELECT %s, * FROM unnest({arrays}) "
                "ON CONFLICT DO NOTHING", tuple(values))
    marks = ", ".join("?" * len(columns))
    return f"INSERT OR IGNORE INTO {model.__tablename__} ({names}) VALUES ({marks})", rows


def _pg_array(values: tuple) -> str:
    """A PostgreSQL array literal of ints and finite floats (repr round-trips exactly)."""
    return "{" + ",".join("NULL" if v is None else repr(v) for v in values) + "}"


class MetricBuffer:
    """Collects epoch records and flushes them by time and by count.

    `add` only appends the engine's record: rows are built at flush time, once per
    batch of epochs, so an unflushed epoch costs the training loop a list append. (The
    records are held until then: the engine builds a new one every epoch.)
    (Sending flushes from a background thread was tried and measured no faster on a
    2-core machine: building the rows competes with training for the GIL, and the
    server's work competes with it for the cores.)
    """

    def __init__(self, factory: sessionmaker[Session], lease: Lease, *, flush_seconds: float,
                 flush_rows: int, clock=time.monotonic):
        self._factory, self._lease = factory, lease
        self._flush_seconds, self._flush_rows, self._clock = flush_seconds, flush_rows, clock
        self._records: list[EpochRecord] = []
        self._last_epoch = 0
        self._last_flush = clock()
        self._backoff = Backoff(clock)

    def add(self, record: EpochRecord | dict) -> None:
        """Buffer one epoch (the engine's record, or its `to_dict()`); flush when due."""
        if isinstance(record, dict):
            record = record_from_dict(record)
        self._records.append(record)
        self._last_epoch = record.epoch
        due = (len(self._records) >= self._flush_rows
               or self._clock() - self._last_flush >= self._flush_seconds)
        if due and self._backoff.ready():
            self._try_flush()

    @property
    def pending(self) -> int:
        """Epoch rows buffered and not yet committed."""
        return len(self._records)

    def _try_flush(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            if not is_transient(exc):
                raise
            # Keep the rows; training goes on and the next due add() tries again.
            wait = self._backoff.failed()
            log.warning("metric flush for %s failed (%s); %d epochs buffered, retry in %.2f s",
                        self._lease.job_id, exc.__class__.__name__, len(self._records), wait)

    def drain(self, progress_epoch: int, lease_lost: Callable[[], bool]) -> None:
        """Flush everything, retrying through database errors until `lease_lost()`."""
        retry_db(lambda: self.flush(progress_epoch), lease_lost=lease_lost,
                 what=f"final metric flush for {self._lease.job_id}")

    def flush(self, progress_epoch: int | None = None) -> None:
        """Write the buffered rows and the job's progress in one fenced transaction."""
        epoch = progress_epoch if progress_epoch is not None else self._last_epoch
        epochs, layers = record_tuples(self._lease.job_id, self._records)
        with session_scope(self._factory) as session:
            # The fenced UPDATE comes first: it locks the job row, so no other worker
            # can take the lease between the check and the inserts.
            hold(session, self._lease, epoch=epoch)
            conn = session.connection()
            for statement in (insert_statement(conn.dialect.name, EpochMetric, EPOCH_COLUMNS,
                                               epochs),
                              insert_statement(conn.dialect.name, LayerMetric, LAYER_COLUMNS,
                                               layers)):
                if statement is not None:
                    conn.exec_driver_sql(*statement)
        self._records = []
        self._last_flush = self._clock()
        self._backoff.succeeded()
