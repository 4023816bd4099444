"""JSON-ready views of jobs, shared by the API and the CLI."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from jobs.clock import aware
from jobs.diagnosis import diagnose
from jobs.models import Job


def iso(moment: datetime | None) -> str | None:
    moment = aware(moment)
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def job_to_dict(job: Job) -> dict:
    return {
        "id": job.id,
        "name": job.name,
        "dataset_id": job.dataset_id,
        "status": job.status,
        "spec": job.spec,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "progress": {"epoch": job.epoch, "epochs": job.epochs},
        "error": job.error,
        "summary": job.summary,
        "manifest": job.manifest,
        "attempts": job.attempts,
        "worker": job.lease_owner,
        "cancel_requested": job.cancel_requested,
        "sweep_id": job.sweep_id,
    }


def job_detail(session: Session, job: Job) -> dict:
    """One job as GET /v1/jobs/{id} answers it: the list view plus its diagnosis flags."""
    return {**job_to_dict(job), "diagnosis": diagnose(session, job)}
