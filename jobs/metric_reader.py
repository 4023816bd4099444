"""Reading a job's telemetry as columns, with min/max-preserving downsampling."""
from __future__ import annotations

import csv
import io

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.metric_writer import EPOCH_FIELDS, LAYER_FIELDS
from jobs.models import EpochMetric, Job, LayerMetric

EPOCH_COLUMNS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")


def read_metrics(session: Session, job: Job, *, since_epoch: int = 0,
                 max_points: int | None = None) -> dict:
    """Columns of every recorded epoch after `since_epoch`.

    With `max_points`, epochs are cut into max_points // 2 windows and each window keeps
    the epochs where the train loss is lowest and highest, so spikes survive.
    """
    epochs = session.execute(
        select(*[getattr(EpochMetric, c) for c in ("epoch",) + EPOCH_FIELDS])
        .where(EpochMetric.job_id == job.id, EpochMetric.epoch > since_epoch)
        .order_by(EpochMetric.epoch)).all()
    if max_points is not None and len(epochs) > max_points:
        epochs = _downsample(epochs, max_points)
    kept = [row.epoch for row in epochs]
    out = {"epoch": kept, **{c: [getattr(r, c) for r in epochs] for c in EPOCH_COLUMNS},
           "layers": _layer_columns(session, job, kept, since_epoch)}
    out["nonfinite"] = any(r.train_loss is None for r in epochs)
    return out


def _downsample(rows: list, max_points: int) -> list:
    windows = max(1, max_points // 2)
    size = -(-len(rows) // windows)
    kept = []
    for start in range(0, len(rows), size):
        window = rows[start:start + size]
        finite = [r for r in window if r.train_loss is not None] or window
        lo = min(finite, key=lambda r: r.train_loss if r.train_loss is not None else 0.0)
        hi = max(finite, key=lambda r: r.train_loss if r.train_loss is not None else 0.0)
        kept.extend(sorted({lo.epoch: lo, hi.epoch: hi}.values(), key=lambda r: r.epoch))
    return kept


def _layer_columns(session: Session, job: Job, kept: list[int], since_epoch: int) -> list[dict]:
    layers = job.spec["network"]["layers"]
    columns = [{"layer": i + 1, "units": spec["units"], "activation": spec["activation"],
                **{f: [] for f in LAYER_FIELDS}} for i, spec in enumerate(layers)]
    if not kept:
        return columns
    wanted = set(kept)
    rows = session.execute(
        select(LayerMetric)
        .where(LayerMetric.job_id == job.id, LayerMetric.epoch > since_epoch,
               LayerMetric.epoch <= kept[-1])
        .order_by(LayerMetric.epoch, LayerMetric.layer)).scalars()
    for row in rows:
        if row.epoch in wanted and 1 <= row.layer <= len(columns):
            column = columns[row.layer - 1]
            for f in LAYER_FIELDS:
                column[f].append(getattr(row, f))
    return columns


def metrics_csv(metrics: dict) -> str:
    """One row per epoch; layer columns named like `layer1_delta_norm`."""
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
