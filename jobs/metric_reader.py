"""Reading a job's telemetry as columns, with min/max-preserving downsampling.

A running job is read through the caller's copy of its columns, when it has one
(jobs/running_columns.py); a finished job with a metric archive (jobs/metric_archive.py)
from its numpy columns; any other job, or a history too big to copy, from its rows.
All give the same columns, epochs and `nonfinite` flag.
"""
from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.metric_archive import (EPOCH_COLUMNS, MetricArchive, archive_columns, load_archive,
                                 window_extremes)
from jobs.metric_writer import LAYER_FIELDS
from jobs.layer_values import unpack
from jobs.models import FINISHED_STATUSES, EpochMetric, Job

if TYPE_CHECKING:  # it imports this module
    from jobs.running_columns import RunningColumns

# Up to this many kept epochs, their rows are fetched by an IN list (well under SQLite's
# 32,766 bound parameters); beyond, by an epoch range.
SPARSE_READ_EPOCHS = 2000


def read_metrics(session: Session, job: Job, *, since_epoch: int = 0,
                 max_points: int | None = None,
                 archive: MetricArchive | None = None,
                 running: RunningColumns | None = None) -> dict:
    """Columns of every recorded epoch after `since_epoch`, as lists (None: non-finite).

    With `max_points`, epochs are cut into max_points // 2 windows and each window keeps
    the epochs where the train loss is lowest and highest, so spikes survive.
    `archive` is the job's, if the caller already has it; `running`, the process's copy
    of running jobs' columns, if it has one (it drops a finished job's copy).
    """
    return as_lists(read_columns(session, job, since_epoch=since_epoch,
                                 max_points=max_points, archive=archive, running=running))


def read_columns(session: Session, job: Job, *, since_epoch: int = 0,
                 max_points: int | None = None, archive: MetricArchive | None = None,
                 running: RunningColumns | None = None) -> dict:
    """read_metrics' columns as they come: numpy arrays (NaN: non-finite) from a copy or
    an archive, lists from the rows (metrics_json and as_lists take either)."""
    columns = running.read(session, job, since_epoch, max_points) if running else None
    if columns is not None:
        return columns
    if archive is None and job.status in FINISHED_STATUSES:
        archive = load_archive(session, job)
    if archive is not None:
        return archive_columns(archive, job, since_epoch, max_points)
    return read_rows(session, job, since_epoch, max_points)


def as_lists(metrics: dict) -> dict:
    """Columns of numpy arrays as plain lists, NaN as None (what the rows path gives)."""
    return {k: ([{f: _plain(v) for f, v in layer.items()} for layer in values]
                if k == "layers" else _plain(values)) for k, values in metrics.items()}


def _plain(values):
    """A numpy column as a list, NaN as None; anything else as it is."""
    if not isinstance(values, np.ndarray):
        return values
    if values.dtype.kind == "f" and np.isnan(values).any():
        return np.where(np.isnan(values), None, values).tolist()
    return values.tolist()


def read_rows(session: Session, job: Job, since_epoch: int,
              max_points: int | None) -> dict:
    """read_metrics from the job's rows (no copy of them, and no archive)."""
    chosen = _choose_epochs(session, job, since_epoch, max_points)
    if chosen is None:
        rows = _epoch_rows(session, job, EpochMetric.epoch > since_epoch)
    else:
        wanted = set(chosen)
        rows = [r for r in _epoch_rows(session, job,
                                       _epoch_filter(EpochMetric, chosen, since_epoch))
                if r[0] in wanted]
    kept, *columns, blobs = ([list(c) for c in zip(*rows)]
                             or [[] for _ in range(2 + len(EPOCH_COLUMNS))])
    out = {"epoch": kept, **dict(zip(EPOCH_COLUMNS, columns)),
           "layers": _layer_columns(job, blobs)}
    out["nonfinite"] = None in out["train_loss"]
    return out


def _choose_epochs(session: Session, job: Job, since_epoch: int,
                   max_points: int | None) -> list[int] | None:
    """The downsampled epochs, or None for all; chosen on (epoch, train_loss) alone so
    the full rows are fetched only for the epochs kept, by the archive's own window
    rule (`window_extremes`), so both paths keep the same epochs."""
    if max_points is None:
        return None
    light = driver_rows(session, select(EpochMetric.epoch, EpochMetric.train_loss)
                        .where(EpochMetric.job_id == job.id, EpochMetric.epoch > since_epoch)
                        .order_by(EpochMetric.epoch))
    if len(light) <= max_points:
        return None
    epochs, losses = zip(*light)
    loss = np.array([np.nan if v is None else v for v in losses], dtype=np.float64)
    return [epochs[i] for i in window_extremes(loss, max_points).tolist()]


def _epoch_rows(session: Session, job: Job, condition) -> list[tuple]:
    """(epoch, *EPOCH_COLUMNS, layers) tuples in epoch order."""
    return driver_rows(session, select(*[getattr(EpochMetric, c)
                                         for c in ("epoch",) + EPOCH_COLUMNS + ("layers",)])
                       .where(EpochMetric.job_id == job.id, condition)
                       .order_by(EpochMetric.epoch))


def _epoch_filter(model, kept: list[int], since_epoch: int):
    """Few epochs by an IN list; many by their range (the caller drops the others)."""
    if len(kept) <= SPARSE_READ_EPOCHS:
        return model.epoch.in_(kept)
    return (model.epoch > since_epoch) & (model.epoch <= kept[-1])


def _layer_columns(job: Job, blobs: list[bytes | None]) -> list[dict]:
    """Each layer's columns (None: non-finite or missing) from the rows' `layers` values."""
    layers = job.spec["network"]["layers"]
    values = unpack(blobs, len(layers))
    return [{"layer": i + 1, "units": spec["units"], "activation": spec["activation"],
             **{f: _plain(values[:, i, j]) for j, f in enumerate(LAYER_FIELDS)}}
            for i, spec in enumerate(layers)]


def driver_rows(session: Session, statement) -> list[tuple]:
    """The statement's rows as the database driver's own tuples, in the session's
    transaction. SQLAlchemy's Row objects cost more than the query itself when a running
    job's full history is read: 80 % of a 7,000-epoch poll went to its 28,000 rows.
    Only for columns the driver already returns as Python values (numbers, text, bytes)."""
    conn = session.connection()
    compiled = statement.compile(dialect=conn.dialect,
                                 compile_kwargs={"render_postcompile": True})
    params = ([compiled.params[name] for name in compiled.positiontup]
              if compiled.positional else compiled.params)
    return _fetch(conn, str(compiled), params)


class Prepared:
    """A statement with named bind parameters, compiled once per dialect, whose rows come
    as driver_rows' do. Compiling a select costs about 0.2 ms, as much as running a
    small one: a poll for a running job's newest epochs runs two."""

    def __init__(self, statement):
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, dict]] = {}

    def rows(self, session: Session, **params) -> list[tuple]:
        conn = session.connection()
        entry = self._compiled.get(conn.dialect.name)
        if entry is None:
            compiled = self.statement.compile(dialect=conn.dialect)
            # SQLite's LIMIT comes with an OFFSET parameter of its own: its default rides along
            entry = (str(compiled), tuple(compiled.positiontup) if compiled.positional else None,
                     dict(compiled.params))
            self._compiled[conn.dialect.name] = entry
        sql, order, defaults = entry
        params = {**defaults, **params}
        return _fetch(conn, sql, params if order is None else [params[k] for k in order])


def _fetch(conn, sql: str, params) -> list[tuple]:
    driver = conn.connection.driver_connection
    # psycopg: binary results, whose floats load without parsing text (SQLite has no choice)
    cursor = driver.cursor(binary=True) if conn.dialect.name == "postgresql" else driver.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


def metrics_csv(metrics: dict) -> str:
    """One row per epoch; layer columns named like `layer1_delta_norm`."""
    metrics = as_lists(metrics)
    header = ["epoch", *EPOCH_COLUMNS]
    for layer in metrics["layers"]:
        header += [f"layer{layer['layer']}_{f}" for f in LAYER_FIELDS]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for i, epoch in enumerate(metrics["epoch"]):
        row = [epoch, *(metrics[c][i] for c in EPOCH_COLUMNS)]
        for layer in metrics["layers"]:
            row += [layer[f][i] if i < len(layer[f]) else None for f in LAYER_FIELDS]
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()
