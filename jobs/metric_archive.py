"""A finished job's telemetry as one columnar archive: numpy arrays in an .npz.

A big history (100,000 epochs x 10 layers is 7,500,000 numbers) cannot be served from
its rows at the speed a read needs. Once a job is final its rows never change
(every metric write is fenced by a running job's lease), so they are packed once into
float64 columns, NaN where a row holds NULL (a non-finite value), and stored as the
job's `metrics` artifact: a row of the `artifacts` table, deleted with the job by its
foreign key's ON DELETE CASCADE, like the model and the checkpoint. Beside it, the
`metrics-json` artifact holds the full response's columns already encoded: encoding
7.5 million floats takes longer than the 300 ms a full read may take, and a final
history's full response never changes.

The archive is only written for a history whose every epoch holds every layer of the
spec; any other history keeps being read from its rows.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from jobs.db import session_scope
from jobs.layer_values import LAYER_BYTES, unpack
from jobs.metric_writer import (EPOCH_FIELDS, LAYER_FIELDS, WrittenRows,
                                insert_ignoring_duplicates)
from jobs.models import FINISHED_STATUSES, Artifact, EpochMetric, Job, utcnow

log = logging.getLogger(__name__)

KIND = "metrics"
JSON_KIND = "metrics-json"
# The epoch fields a read returns (not `seconds`).
EPOCH_COLUMNS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")


class BadArchive(ValueError):
    """Stored bytes that are not a well-formed archive (read from the rows instead)."""


@dataclass(frozen=True)
class MetricArchive:
    epoch: np.ndarray                 # int64, strictly increasing
    columns: dict[str, np.ndarray]    # EPOCH_COLUMNS -> float64, NaN for NULL
    layers: np.ndarray                # float64 (layer, LAYER_FIELDS, epoch), NaN for NULL

    def select(self, since_epoch: int, max_points: int | None) -> slice | np.ndarray:
        """Which epochs a read returns: a slice after `since_epoch`, or, when more than
        `max_points` remain, the indices of each window's lowest and highest train loss."""
        start = int(np.searchsorted(self.epoch, since_epoch, side="right"))
        if max_points is None or len(self.epoch) - start <= max_points:
            return slice(start, None)
        return start + window_extremes(self.columns["train_loss"][start:], max_points)


def window_extremes(loss: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices of the first lowest and first highest finite loss of each of the
    max_points // 2 windows (the first index of a window with no finite loss). The rows
    path (jobs/metric_reader.py) keeps the epochs this chooses too."""
    windows = max(1, max_points // 2)
    size = -(-len(loss) // windows)
    count = -(-len(loss) // size)
    pad = count * size - len(loss)
    # NaN (and the padding of the last window) can never win: +inf for the min, -inf for
    # the max; a window of only those gets index 0 from argmin/argmax, its first epoch.
    low = np.concatenate([np.where(np.isnan(loss), np.inf, loss), np.full(pad, np.inf)])
    high = np.concatenate([np.where(np.isnan(loss), -np.inf, loss), np.full(pad, -np.inf)])
    base = np.arange(count) * size
    lo = base + low.reshape(count, size).argmin(axis=1)
    hi = base + high.reshape(count, size).argmax(axis=1)
    return np.unique(np.concatenate([lo, hi]))


def archive_columns(archive: MetricArchive, job: Job, since_epoch: int = 0,
                    max_points: int | None = None) -> dict:
    """read_metrics' columns as numpy arrays (NaN: non-finite), cut from the archive."""
    kept = archive.select(since_epoch, max_points)
    loss = archive.columns["train_loss"][kept]
    layers = [{"layer": i + 1, "units": spec["units"], "activation": spec["activation"],
               **{f: archive.layers[i, j, kept] for j, f in enumerate(LAYER_FIELDS)}}
              for i, spec in enumerate(job.spec["network"]["layers"])]
    return {"epoch": archive.epoch[kept], "train_loss": loss,
            **{c: archive.columns[c][kept] for c in EPOCH_COLUMNS[1:]},
            "layers": layers, "nonfinite": bool(np.isnan(loss).any())}


def metrics_json(metrics: dict, **head) -> bytes:
    """A JSON object of `head`'s fields, then the columns (lists or numpy arrays);
    orjson writes NaN as null, as the rows path has None."""
    return orjson.dumps({**head, **metrics}, option=orjson.OPT_SERIALIZE_NUMPY)


def with_head(body: bytes, **head) -> bytes:
    """`body`, a JSON object, with `head`'s fields put first."""
    return orjson.dumps(head)[:-1] + b"," + body[1:]


def build_archive(session: Session, job: Job) -> MetricArchive | None:
    """The job's rows as columns; None unless every epoch holds every layer's values."""
    rows = session.execute(
        select(EpochMetric.epoch, *[getattr(EpochMetric, c) for c in EPOCH_COLUMNS],
               EpochMetric.layers)
        .where(EpochMetric.job_id == job.id).order_by(EpochMetric.epoch)).all()
    return columns_from_rows(list(map(tuple, rows)), len(job.spec["network"]["layers"]))


def columns_from_rows(rows: list[tuple], n_layers: int) -> MetricArchive | None:
    """Columns from (epoch, *EPOCH_COLUMNS, layers) tuples in epoch order; None unless
    every row holds `n_layers` layers' values."""
    if any(blob is None or len(blob) != n_layers * LAYER_BYTES for *_, blob in rows):
        return None
    # float64 from tuples turns NULL (None) into NaN in C; from Row objects it is 10x
    # slower (each goes through the generic sequence protocol).
    epochs = np.array([row[:-1] for row in rows],
                      dtype=np.float64).reshape(-1, 1 + len(EPOCH_COLUMNS))
    return _archive(epochs, unpack([row[-1] for row in rows], n_layers))


def columns_from_written(written: WrittenRows, n_layers: int) -> MetricArchive | None:
    """The archive of the rows a worker's MetricBuffer wrote (the same as of the stored
    rows when that worker trained the job from scratch); None if it forgot them, if
    their epochs do not strictly increase, or if they are not of `n_layers` layers."""
    rows = written.rows()
    if rows is None or np.any(np.diff(rows.epochs) <= 0):  # the stored order is the key's
        return None
    if len(rows) and rows.layers.shape[1] != n_layers:
        return None
    keep = [EPOCH_FIELDS.index(c) for c in EPOCH_COLUMNS]
    epochs = np.column_stack([rows.epochs, rows.values[:, keep]])
    return _archive(epochs, rows.layers.reshape(len(rows), n_layers, len(LAYER_FIELDS)))


def _archive(epochs: np.ndarray, layers: np.ndarray) -> MetricArchive:
    """From (E, 1 + len(EPOCH_COLUMNS)) epoch rows and (E, layers, LAYER_FIELDS) values."""
    return MetricArchive(epochs[:, 0].astype(np.int64),
                         {c: np.ascontiguousarray(epochs[:, i + 1])
                          for i, c in enumerate(EPOCH_COLUMNS)},
                         np.ascontiguousarray(layers.transpose(1, 2, 0)))


def to_bytes(archive: MetricArchive) -> bytes:
    # Uncompressed: the floats barely compress, and reads must not pay for inflating.
    buf = io.BytesIO()
    np.savez(buf, epoch=archive.epoch, layers=archive.layers, **archive.columns)
    return buf.getvalue()


def from_bytes(data: bytes) -> MetricArchive:
    """The archive in `data`; BadArchive if it is not one (never unpickles)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            epoch, layers = npz["epoch"], npz["layers"]
            columns = {c: npz[c] for c in EPOCH_COLUMNS}
    except (ValueError, KeyError, OSError, EOFError) as exc:
        raise BadArchive(f"unreadable metric archive: {exc}") from exc
    n = len(epoch) if epoch.ndim == 1 else -1
    if (epoch.dtype != np.int64 or n < 0 or layers.dtype != np.float64 or layers.ndim != 3
            or layers.shape[1:] != (len(LAYER_FIELDS), n)
            or any(c.dtype != np.float64 or c.shape != (n,) for c in columns.values())):
        raise BadArchive("metric archive arrays have the wrong types or shapes")
    return MetricArchive(epoch, columns, layers)


def load_archive(session: Session, job: Job) -> MetricArchive | None:
    """The job's stored archive, or None (none yet, or unreadable: rows are the truth)."""
    data = session.scalar(select(Artifact.data).where(Artifact.job_id == job.id,
                                                      Artifact.kind == KIND))
    if data is None:
        return None
    try:
        archive = from_bytes(data)
    except BadArchive:
        log.warning("metric archive of job %s is unreadable; reading its rows", job.id)
        return None
    if len(archive.layers) != len(job.spec["network"]["layers"]):
        return None
    return archive


def ensure_archive(session: Session, job: Job,
                   written: WrittenRows | None = None) -> MetricArchive | None:
    """The finished job's archive, built and added to the session if it has none yet (the
    caller commits); None for a running job or incomplete rows.

    Built from `written` when given (the caller vouches that those are all the job's
    rows) and complete, else from the stored rows.
    """
    if job.status not in FINISHED_STATUSES:
        return None
    archive = load_archive(session, job)
    if archive is not None:
        return archive
    n_layers = len(job.spec["network"]["layers"])
    archive = ((columns_from_written(written, n_layers) if written is not None else None)
               or build_archive(session, job))
    if archive is not None:
        # Whoever archives a final history writes the same bytes: the first one stays.
        full = metrics_json(archive_columns(archive, job))
        insert_ignoring_duplicates(session, Artifact, [
            {"job_id": job.id, "kind": kind, "epoch": job.epoch, "lease_epoch": job.lease_epoch,
             "data": data, "created_at": utcnow()}
            for kind, data in ((KIND, to_bytes(archive)), (JSON_KIND, full))])
    return archive


def load_full_json(session: Session, job: Job) -> bytes | None:
    """The finished job's every column as one JSON object (see with_head), or None."""
    return session.scalar(select(Artifact.data).where(Artifact.job_id == job.id,
                                                      Artifact.kind == JSON_KIND))


def archive_finished(factory: sessionmaker[Session], job_id: str,
                     written: WrittenRows | None = None) -> None:
    """Archive a job the worker just finished, from `written` if those are all its rows
    (see ensure_archive). Needs no lease: the job is final, so its rows can no longer
    change. A failure only logs; the first read archives it then."""
    try:
        with session_scope(factory) as session:
            job = session.get(Job, job_id)
            if job is not None:
                ensure_archive(session, job, written)
    except Exception:
        log.warning("could not archive the metrics of job %s", job_id, exc_info=True)

