"""Reading a job's telemetry as columns, with min/max-preserving downsampling.

A running job is read through the caller's copy of its columns, when it has one
(jobs/running_columns.py); a finished job with a metric archive (jobs/metric_archive.py)
from its numpy columns; any other job, or a history too big to copy, from its rows.
All give the same columns, epochs and `nonfinite` flag.
"""
from __future__ import annotations

import csv
import io
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from jobs.metric_archive import (EPOCH_COLUMNS, MetricArchive, archive_columns, load_archive,
                                 window_extremes)
from jobs.metric_writer import LAYER_FIELDS
from jobs.models import FINISHED_STATUSES, EpochMetric, Job, LayerMetric

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
    def plain(values):
        if not isinstance(values, np.ndarray):
            return values
        if values.dtype.kind == "f" and np.isnan(values).any():
            return np.where(np.isnan(values), None, values).tolist()
        return values.tolist()
    return {k: ([{f: plain(v) for f, v in layer.items()} for layer in values]
                if k == "layers" else plain(values)) for k, values in metrics.items()}


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
    kept, *columns = [list(c) for c in zip(*rows)] or [[] for _ in range(1 + len(EPOCH_COLUMNS))]
    out = {"epoch": kept, **dict(zip(EPOCH_COLUMNS, columns)),
           "layers": _layer_columns(session, job, kept, since_epoch)}
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
    """(epoch, *EPOCH_COLUMNS) tuples in epoch order."""
    return driver_rows(session, select(*[getattr(EpochMetric, c)
                                         for c in ("epoch",) + EPOCH_COLUMNS])
                       .where(EpochMetric.job_id == job.id, condition)
                       .order_by(EpochMetric.epoch))


def _epoch_filter(model, kept: list[int], since_epoch: int):
    """Few epochs by an IN list; many by their range (the caller drops the others)."""
    if len(kept) <= SPARSE_READ_EPOCHS:
        return model.epoch.in_(kept)
    return (model.epoch > since_epoch) & (model.epoch <= kept[-1])


def _layer_columns(session: Session, job: Job, kept: list[int], since_epoch: int) -> list[dict]:
    layers = job.spec["network"]["layers"]
    columns = [{"layer": i + 1, "units": spec["units"], "activation": spec["activation"],
                **{f: [] for f in LAYER_FIELDS}} for i, spec in enumerate(layers)]
    if not kept:
        return columns
    rows = driver_rows(session, select(LayerMetric.layer, LayerMetric.epoch,
                                       *[getattr(LayerMetric, f) for f in LAYER_FIELDS])
                       .where(LayerMetric.job_id == job.id,
                              _epoch_filter(LayerMetric, kept, since_epoch))
                       .order_by(LayerMetric.layer, LayerMetric.epoch))
    wanted = set(kept)
    for layer, group in groupby(rows, key=itemgetter(0)):
        if not 1 <= layer <= len(columns):
            continue
        _, epochs, *values = zip(*group)
        if list(epochs) != kept:  # a range read holds epochs between the kept ones
            keep = [i for i, epoch in enumerate(epochs) if epoch in wanted]
            values = [[column[i] for i in keep] for column in values]
        columns[layer - 1].update((f, list(v)) for f, v in zip(LAYER_FIELDS, values))
    return columns


def driver_rows(session: Session, statement) -> list[tuple]:
    """The statement's rows as the database driver's own tuples, in the session's
    transaction. SQLAlchemy's Row objects cost more than the query itself when a running
    job's full history is read: 80 % of a 7,000-epoch poll went to its 28,000 rows.
    Only for columns the driver already returns as Python values (numbers, text)."""
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


def layer_rows(fields: tuple[str, ...]) -> Prepared:
    """(epoch, layer, *fields) of a job's epochs in (after, upto], in epoch and layer
    order; parameters job_id, after, upto."""
    return Prepared(select(LayerMetric.epoch, LayerMetric.layer,
                           *[getattr(LayerMetric, f) for f in fields])
                    .where(LayerMetric.job_id == bindparam("job_id"),
                           LayerMetric.epoch > bindparam("after"),
                           LayerMetric.epoch <= bindparam("upto"))
                    .order_by(LayerMetric.epoch, LayerMetric.layer))


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
