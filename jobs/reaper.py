"""The reaper: finds jobs no live worker will finish, and gets them going again.

It runs as a loop in every worker process (worker/reaper_loop.py) rather than in Celery
beat: beat is one more process to deploy, and if it is down nothing is reaped; a loop in
each worker runs wherever jobs can run. Several reapers at once are safe because every
change is a conditional UPDATE that repeats the condition it was selected by, so for
each job exactly one reaper's UPDATE matches and only that one re-sends the job.

One pass:
- a running (or cancelling) job whose lease expired lost its worker. Cancelling: it is
  cancelled. Attempts left: back to `queued`, to be re-sent and resumed from its last
  checkpoint. None left: failed, with the reason.
- a `queued` job whose message was sent more than `requeue_queued_after_s` ago is
  re-sent: the API may have died between commit and publish, or the broker may have
  lost its queue. A duplicate message is harmless (the claim is conditional).
Domain code: takes a session, never commits; the caller commits, then sends.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from jobs.clock import aware, db_now
from jobs.lease import RUNNING_STATUSES
from jobs.models import Job
from jobs.settings import Settings
from jobs.sweeps import promote_stalled

BATCH = 200  # jobs per pass and kind; a backlog is worked off over several passes


@dataclass
class ReapResult:
    requeued: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    @property
    def to_send(self) -> list[str]:
        """Job ids to publish once the caller has committed."""
        return self.requeued + self.resent


def reap(session: Session, settings: Settings) -> ReapResult:
    now = db_now(session)
    result = ReapResult()
    _reap_expired(session, settings, now, result)
    _resend_stale(session, settings, now, result)
    # Issue 7: sweep trials whose predecessor ended with no worker left to queue them.
    result.resent.extend(promote_stalled(session))
    return result


def _reap_expired(session: Session, settings: Settings, now: datetime, result: ReapResult):
    rows = session.execute(
        select(Job.id, Job.lease_epoch, Job.attempts, Job.cancel_requested, Job.lease_owner,
               Job.lease_expires_at, Job.epoch)
        .where(Job.status.in_(RUNNING_STATUSES), Job.lease_expires_at < now)
        .order_by(Job.lease_expires_at).limit(BATCH)).all()
    for row in rows:
        # Same lease number, still expired: no worker renewed or re-claimed it meanwhile.
        still = and_(Job.id == row.id, Job.lease_epoch == row.lease_epoch,
                     Job.status.in_(RUNNING_STATUSES), Job.lease_expires_at < now)
        if row.cancel_requested:
            values, bucket = {"status": "cancelled", "finished_at": now}, result.cancelled
        elif row.attempts >= settings.max_attempts:
            values = {"status": "failed", "finished_at": now, "error": gave_up_reason(row)}
            bucket = result.gave_up
        else:
            values = {"status": "queued", "lease_owner": None, "enqueued_at": now}
            bucket = result.requeued
        moved = session.execute(update(Job).where(still)
                                .values(lease_expires_at=None, **values)
                                .execution_options(synchronize_session=False))
        if moved.rowcount == 1:
            bucket.append(row.id)


def gave_up_reason(row) -> str:
    expired = aware(row.lease_expires_at)
    return (f"gave up after {row.attempts} attempts: the worker died each time (last: "
            f"{row.lease_owner or 'unknown worker'}, lease expired at "
            f"{expired:%Y-%m-%d %H:%M:%S} UTC, during epoch {row.epoch + 1})")


def _resend_stale(session: Session, settings: Settings, now: datetime, result: ReapResult):
    cutoff = now - timedelta(seconds=settings.requeue_queued_after_s)
    stale = and_(Job.status == "queued",
                 or_(Job.enqueued_at < cutoff, Job.enqueued_at.is_(None)))
    ids = session.scalars(select(Job.id).where(stale).order_by(Job.enqueued_at)
                          .limit(BATCH)).all()
    for job_id in ids:
        moved = session.execute(update(Job).where(Job.id == job_id, stale)
                                .values(enqueued_at=now)
                                .execution_options(synchronize_session=False))
        if moved.rowcount == 1:
            result.resent.append(job_id)
