"""The lease on a job row: claim, renew, finish. Every write is fenced by `lease_epoch`.

A worker holds a job while `lease_epoch` is the number it got at claim time and the job is
running (or cancelling). `lease_expires_at` is computed by the database clock, never a
worker's. A duplicate delivery finds the job not claimable and does nothing; a worker
that lost its lease finds its fenced writes matching no row and stops.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, case, func, or_, update
from sqlalchemy.orm import Session

from jobs.clock import db_now
from jobs.models import Job

RUNNING_STATUSES = ("running", "cancelling")


class LeaseLost(Exception):
    """The job's lease belongs to someone else now; this worker must stop."""


@dataclass(frozen=True)
class Lease:
    job_id: str
    epoch: int
    owner: str


def claim(session: Session, job_id: str, owner: str, *, ttl_s: float, max_attempts: int
          ) -> Lease | None:
    """Take the job if it is queued, or running under an expired lease; else None.

    One conditional UPDATE, so of two workers racing for the job exactly one wins.
    """
    now = db_now(session)
    claimable = or_(Job.status == "queued",
                    and_(Job.status.in_(RUNNING_STATUSES), Job.lease_expires_at < now))
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, claimable, Job.attempts < max_attempts)
        # A cancel asked while the job had no live worker is honoured at the first beat.
        .values(status=case((Job.cancel_requested, "cancelling"), else_="running"),
                lease_owner=owner, lease_epoch=Job.lease_epoch + 1,
                attempts=Job.attempts + 1, lease_expires_at=now + timedelta(seconds=ttl_s),
                started_at=func.coalesce(Job.started_at, now))
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        return None
    job = session.get(Job, job_id, populate_existing=True)
    return Lease(job_id, job.lease_epoch, owner)


def fenced(lease: Lease):
    """The WHERE clause that holds only while `lease` is still the job's lease."""
    return and_(Job.id == lease.job_id, Job.lease_epoch == lease.epoch,
                Job.status.in_(RUNNING_STATUSES))


def hold(session: Session, lease: Lease, **values) -> None:
    """Update the job row under the lease (locking it until commit); LeaseLost if lost."""
    moved = session.execute(update(Job).where(fenced(lease)).values(**values)
                            .execution_options(synchronize_session=False))
    if moved.rowcount != 1:
        raise LeaseLost(lease.job_id)


def renew(session: Session, lease: Lease, *, ttl_s: float) -> bool | None:
    """Extend the lease; returns cancel_requested, or None if the lease was lost."""
    now = db_now(session)
    result = session.execute(
        update(Job).where(fenced(lease))
        .values(lease_expires_at=now + timedelta(seconds=ttl_s))
        .returning(Job.cancel_requested))
    row = result.first()
    return None if row is None else bool(row[0])


def finish(session: Session, lease: Lease, *, status: str, error: str | None = None,
           summary: dict | None = None) -> bool:
    """Move the job to a final state; False if the lease was lost."""
    values: dict = {"status": status, "lease_expires_at": None,
                    "finished_at": db_now(session)}
    if error is not None:
        values["error"] = error
    if summary is not None:
        values["summary"] = summary
    result = session.execute(update(Job).where(fenced(lease)).values(**values)
                             .execution_options(synchronize_session=False))
    return result.rowcount == 1


def hand_back(session: Session, lease: Lease) -> bool:
    """Return the job to the queue (graceful shutdown); False if the lease was lost.

    The attempt is given back: a deploy or scale-down is not the job's fault, and must
    not push a healthy job towards `max_attempts` (Kubernetes' podFailurePolicy Ignore).
    """
    result = session.execute(
        update(Job).where(fenced(lease))
        .values(status="queued", lease_owner=None, lease_expires_at=None,
                attempts=Job.attempts - 1, enqueued_at=db_now(session))
        .execution_options(synchronize_session=False))
    return result.rowcount == 1
