"""Reconciling jobs with an uninterrupted reference run, and the suite's figures.

The reference is the engine run in this process on the same spec and data; a job is
bit-identical when its final weights bytes and every metric row (except the wall-clock
`seconds`) equal the reference's.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

import mlp
from jobs.artifacts import MODEL, load_artifact
from jobs.datasets import load_arrays
from jobs.metric_writer import EPOCH_FIELDS
from jobs.models import Dataset, EpochMetric, Job
from jobs.storage import BlobStore
from tests.factories import epoch_rows

COMPARED_EPOCH_FIELDS = tuple(f for f in EPOCH_FIELDS if f != "seconds")


@dataclass(frozen=True)
class Outcome:
    model: bytes | None
    epochs: tuple  # (epoch, *COMPARED_EPOCH_FIELDS, layers) per epoch


def _epoch_key(row: dict) -> tuple:
    return (row["epoch"], *(row[f] for f in COMPARED_EPOCH_FIELDS), row["layers"])


_REFERENCES: dict[str, Outcome] = {}


def reference_outcome(spec: dict, X, y, n_classes: int | None) -> Outcome:
    """The uninterrupted in-process run, cached by spec and data."""
    key = json.dumps(spec, sort_keys=True) + str(hash(X.tobytes())) + str(hash(y.tobytes()))
    if key not in _REFERENCES:
        trainer = mlp.Trainer(spec, X, y, n_classes=n_classes)
        epochs = []
        trainer.fit(on_epoch=lambda record: epochs.append(
            _epoch_key(epoch_rows("ref", record.to_dict()))))
        _REFERENCES[key] = Outcome(trainer.model().to_bytes(), tuple(epochs))
    return _REFERENCES[key]


def job_outcome(session: Session, job_id: str) -> Outcome:
    model = load_artifact(session, job_id, MODEL)
    epochs = session.execute(select(EpochMetric).where(EpochMetric.job_id == job_id)
                             .order_by(EpochMetric.epoch)).scalars()
    return Outcome(model.data if model else None, tuple(_epoch_key(vars(r)) for r in epochs))


def matches_reference(session: Session, storage_dir, job_id: str) -> bool:
    """Final weights and every metric row equal the uninterrupted run's."""
    job = session.get(Job, job_id)
    dataset = session.get(Dataset, job.dataset_id)
    X, y = load_arrays(BlobStore(storage_dir), dataset)
    n_classes = dataset.n_outputs if dataset.task == "classification" else None
    return job_outcome(session, job_id) == reference_outcome(job.spec, X, y, n_classes)


def duplicate_metric_rows(session: Session) -> int:
    """Groups of (job, epoch) stored more than once, across all jobs."""
    return session.execute(text(
        "SELECT count(*) FROM (SELECT job_id, epoch FROM epoch_metrics GROUP BY job_id, epoch "
        "HAVING count(*) > 1) d")).scalar_one()


def missing_epochs(session: Session, job_id: str, up_to: int) -> list[int]:
    """Epochs 1..up_to that have no metric row (a lost epoch)."""
    have = set(session.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)))
    return [e for e in range(1, up_to + 1) if e not in have]


def metric_row_count(session: Session, job_id: str) -> int:
    return session.scalar(select(func.count()).select_from(EpochMetric)
                          .where(EpochMetric.job_id == job_id))


@dataclass
class Figures:
    """One scenario's line in the table of docs/reliability.md."""

    scenario: str
    accepted: int = 0
    completed: int = 0
    identical: int = 0
    compared: int = 0
    duplicates: int = 0
    recoveries: list[float] = field(default_factory=list)
    note: str = ""

    def line(self) -> str:
        rec = "n/a"
        if self.recoveries:
            ordered = sorted(self.recoveries)
            p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
            rec = f"p50 {statistics.median(ordered):.1f} s, p95 {p95:.1f} s, max {ordered[-1]:.1f} s"
        return (f"{self.scenario}: completed {self.completed}/{self.accepted}; bit-identical "
                f"{self.identical}/{self.compared}; duplicate metric rows {self.duplicates}; "
                f"recovery {rec}" + (f"; {self.note}" if self.note else ""))
