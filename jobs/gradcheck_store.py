"""Gradient checks during training, and their stored per-layer errors.

A job whose spec has `diagnostics.gradient_check` compares backprop with central finite
differences every `every_epochs` epochs. The check is not free: two forward passes per
parameter on `samples` rows, against one forward and one backward pass for backprop. The
rows are written under the job's lease and ignore duplicates, so a resumed run that
repeats an epoch never writes a second copy.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import mlp
from jobs.datasets import load_arrays
from jobs.db import session_scope
from jobs.db_retry import retry_db
from jobs.lease import Lease, hold
from jobs.metric_writer import finite_or_none, insert_ignoring_duplicates
from jobs.models import Dataset, GradientCheck, Job
from jobs.settings import Settings
from jobs.storage import BlobStore


def check_rows(job_id: str, epoch: int, result: dict) -> list[dict]:
    """One GradientCheck row per layer of `mlp.gradient_check`'s result."""
    return [{"job_id": job_id, "epoch": epoch, "layer": layer["layer"],
             "weight_rel_error": finite_or_none(layer["weight_rel_error"]),
             "bias_rel_error": finite_or_none(layer["bias_rel_error"])}
            for layer in result["layers"]]


class GradcheckRecorder:
    """Runs the spec's gradient check at recorded epochs and stores it, fenced by lease.

    The check runs at the first recorded epoch at or after each multiple of
    `every_epochs` (records may be sparser than checks), counting from the epoch the
    trainer starts at, so a resumed run checks the same epochs as an uninterrupted one.
    Dataset arrays are loaded on the first check only: jobs without the option pay nothing.
    """

    def __init__(self, factory: sessionmaker[Session], settings: Settings, lease: Lease,
                 trainer: mlp.Trainer, lease_lost: Callable[[], bool]):
        self._factory, self._settings, self._lease = factory, settings, lease
        self._lease_lost = lease_lost
        self._spec = trainer.spec
        self._config = (self._spec.get("diagnostics") or {}).get("gradient_check")
        self._last_checked = trainer.epoch
        self._data: tuple[np.ndarray, np.ndarray, int | None] | None = None

    def maybe(self, record: mlp.EpochRecord, trainer: mlp.Trainer) -> None:
        if self._config is None:
            return
        every = self._config["every_epochs"]
        if record.epoch // every <= self._last_checked // every:
            return
        X, y, n_classes = self._arrays()
        result = mlp.gradient_check(self._spec, X, y, n_classes=n_classes,
                                    samples=self._config["samples"], weights=trainer.model())
        rows = check_rows(self._lease.job_id, record.epoch, result)
        retry_db(lambda: self._write(rows), lease_lost=self._lease_lost,
                 what=f"gradient check of {self._lease.job_id}")
        self._last_checked = record.epoch

    def _write(self, rows: list[dict]) -> None:
        with session_scope(self._factory) as session:
            hold(session, self._lease, lease_epoch=self._lease.epoch)  # LeaseLost if lost
            insert_ignoring_duplicates(session, GradientCheck, rows)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, int | None]:
        if self._data is None:
            with session_scope(self._factory) as session:
                job = session.get(Job, self._lease.job_id)
                dataset = session.get(Dataset, job.dataset_id)
                session.expunge(dataset)
            X, y = load_arrays(BlobStore(self._settings.storage_dir), dataset)
            n_classes = dataset.n_outputs if dataset.task == "classification" else None
            self._data = (X, y, n_classes)
        return self._data


def read_gradchecks(session: Session, job: Job) -> list[dict]:
    """The job's stored checks, by epoch: [{"epoch", "max_rel_error", "layers": [...]}]."""
    rows = session.scalars(select(GradientCheck).where(GradientCheck.job_id == job.id)
                           .order_by(GradientCheck.epoch, GradientCheck.layer))
    by_epoch: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_epoch[row.epoch].append({"layer": row.layer,
                                    "weight_rel_error": row.weight_rel_error,
                                    "bias_rel_error": row.bias_rel_error})
    return [{"epoch": epoch, "max_rel_error": _worst(layers), "layers": layers}
            for epoch, layers in by_epoch.items()]


def _worst(layers: list[dict]) -> float | None:
    values = [v for layer in layers for v in (layer["weight_rel_error"], layer["bias_rel_error"])]
    # A NULL error was non-finite when computed: the worst possible, reported as null.
    return None if any(v is None for v in values) else max(values)
