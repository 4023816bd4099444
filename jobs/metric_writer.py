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
import time
from collections.abc import Callable

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from jobs.db import session_scope
from jobs.db_retry import Backoff, is_transient, retry_db
from jobs.lease import Lease, hold
from jobs.models import EpochMetric, LayerMetric

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


class MetricBuffer:
    """Collects epoch records and flushes them by time and by count."""

    def __init__(self, factory: sessionmaker[Session], lease: Lease, *, flush_seconds: float,
                 flush_rows: int, clock=time.monotonic):
        self._factory, self._lease = factory, lease
        self._flush_seconds, self._flush_rows, self._clock = flush_seconds, flush_rows, clock
        self._epochs: list[dict] = []
        self._layers: list[dict] = []
        self._last_epoch = 0
        self._last_flush = clock()
        self._backoff = Backoff(clock)

    def add(self, record: dict) -> None:
        row, layers = epoch_rows(self._lease.job_id, record)
        self._epochs.append(row)
        self._layers.extend(layers)
        self._last_epoch = record["epoch"]
        due = (len(self._epochs) >= self._flush_rows
               or self._clock() - self._last_flush >= self._flush_seconds)
        if due and self._backoff.ready():
            self._try_flush()

    @property
    def pending(self) -> int:
        """Epoch rows buffered and not yet committed."""
        return len(self._epochs)

    def _try_flush(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            if not is_transient(exc):
                raise
            # Keep the rows; training goes on and the next due add() tries again.
            wait = self._backoff.failed()
            log.warning("metric flush for %s failed (%s); %d epochs buffered, retry in %.2f s",
                        self._lease.job_id, exc.__class__.__name__, len(self._epochs), wait)

    def drain(self, progress_epoch: int, lease_lost: Callable[[], bool]) -> None:
        """Flush everything, retrying through database errors until `lease_lost()`."""
        retry_db(lambda: self.flush(progress_epoch), lease_lost=lease_lost,
                 what=f"final metric flush for {self._lease.job_id}")

    def flush(self, progress_epoch: int | None = None) -> None:
        """Write the buffered rows and the job's progress in one fenced transaction."""
        epoch = progress_epoch if progress_epoch is not None else self._last_epoch
        with session_scope(self._factory) as session:
            # The fenced UPDATE comes first: it locks the job row, so no other worker
            # can take the lease between the check and the inserts.
            hold(session, self._lease, epoch=epoch)
            insert_ignoring_duplicates(session, EpochMetric, self._epochs)
            insert_ignoring_duplicates(session, LayerMetric, self._layers)
        self._epochs, self._layers = [], []
        self._last_flush = self._clock()
        self._backoff.succeeded()
