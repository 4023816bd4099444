"""Reproducing a job: submit its stored spec again, and compare two jobs.

The stored spec is canonical and carries the seed (chosen by the server when the user
gave none), so a rerun on the same dataset trains bit-identically. Functions take a
session and never commit.
"""
from __future__ import annotations

import copy

from sqlalchemy.orm import Session

from jobs.errors import Conflict
from jobs.metric_reader import read_metrics
from jobs.models import Job
from jobs.settings import Settings
from jobs.submission import create_job, get_job

CURVES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


def rerun(session: Session, settings: Settings, owner_id: str, job_id: str) -> Job:
    """A new queued job with the same spec (seed included) on the same dataset."""
    original = get_job(session, owner_id, job_id)
    if original.dataset_id is None:
        raise Conflict(f"the dataset of job {job_id} was deleted; it cannot be rerun",
                       [("dataset_id", "the job's dataset no longer exists")])
    job, _ = create_job(session, settings, owner_id=owner_id, dataset_id=original.dataset_id,
                        name=original.name, raw_spec=copy.deepcopy(original.spec))
    job.manifest = {**job.manifest, "rerun_of": original.id}
    return job


def differences(a: object, b: object, path: str = "") -> list[dict]:
    """Every leaf where `a` and `b` differ: [{"path", "a", "b"}], a missing side as null."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else str(key)
            out += differences(a.get(key), b.get(key), sub)
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            out += differences(a[i] if i < len(a) else None, b[i] if i < len(b) else None,
                               f"{path}[{i}]")
        return out
    # bool is an int in Python: 1 and true must still count as different.
    if a == b and type(a) is type(b):
        return []
    return [{"path": path, "a": a, "b": b}]


def diff_jobs(session: Session, owner_id: str, a_id: str, b_id: str, *,
              max_points: int | None = None) -> dict:
    """Spec and manifest differences, and both curves on one epoch axis (null where a
    job has no record of that epoch)."""
    a, b = get_job(session, owner_id, a_id), get_job(session, owner_id, b_id)
    ma = read_metrics(session, a, max_points=max_points)
    mb = read_metrics(session, b, max_points=max_points)
    epochs = sorted(set(ma["epoch"]) | set(mb["epoch"]))
    return {"a": a.id, "b": b.id, "spec": differences(a.spec, b.spec),
            "manifest": differences(a.manifest or {}, b.manifest or {}),
            "curves": {"epoch": epochs, "a": _aligned(ma, epochs), "b": _aligned(mb, epochs)}}


def _aligned(metrics: dict, epochs: list[int]) -> dict:
    position = {e: i for i, e in enumerate(metrics["epoch"])}
    return {c: [metrics[c][position[e]] if e in position else None for e in epochs]
            for c in CURVES}
