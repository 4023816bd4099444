"""What an administrator sees across users. The caller checks the admin role.

Functions take a Session and never commit.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.job_views import job_to_dict
from jobs.models import Job


def list_all_jobs(session: Session, *, owner_id: str | None = None, status: str | None = None,
                  limit: int = 50, offset: int = 0) -> list[Job]:
    """Every user's jobs, newest first, optionally for one owner or one status."""
    query = select(Job)
    if owner_id is not None:
        query = query.where(Job.owner_id == owner_id)
    if status is not None:
        query = query.where(Job.status == status)
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


def admin_job_view(job: Job) -> dict:
    """The owner's view of the job plus who owns it."""
    return {**job_to_dict(job), "owner_id": job.owner_id}
