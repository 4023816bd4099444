"""Checkpoints and final models: binary engine state stored on the job, fenced by lease."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.lease import Lease, hold
from jobs.metric_writer import insert_ignoring_duplicates
from jobs.models import Artifact, utcnow

CHECKPOINT = "checkpoint"
MODEL = "model"


def save_artifact(session: Session, lease: Lease, *, kind: str, epoch: int, data: bytes,
                  **job_values) -> None:
    """Replace the job's `kind` artifact, only while `lease` is still held.

    `job_values` are written to the job row in the same fenced UPDATE.
    """
    hold(session, lease, epoch=epoch, **job_values)
    existing = session.get(Artifact, (lease.job_id, kind))
    if existing is None:
        insert_ignoring_duplicates(session, Artifact, [{
            "job_id": lease.job_id, "kind": kind, "epoch": epoch,
            "lease_epoch": lease.epoch, "data": data, "created_at": utcnow()}])
    else:
        existing.epoch, existing.lease_epoch, existing.data = epoch, lease.epoch, data
        existing.created_at = utcnow()


def load_artifact(session: Session, job_id: str, kind: str) -> Artifact | None:
    return session.scalar(select(Artifact).where(Artifact.job_id == job_id,
                                                 Artifact.kind == kind))
