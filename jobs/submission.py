"""Accepting, listing and cancelling jobs. Functions take a session and never commit."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import mlp
from jobs.datasets import get_dataset
from jobs.errors import Conflict, InvalidInput, NotFound
from jobs.limits import check_job_limits
from jobs.manifest import build_manifest
from jobs.models import FINISHED_STATUSES, JOB_STATUSES, Job, utcnow
from jobs.settings import Settings

SEED_RANGE = 2**31


def canonical_hash(obj: object) -> str:
    """SHA-256 of the canonical JSON form (sorted keys, no spaces)."""
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(data.encode()).hexdigest()


def validate_job_spec(raw_spec: dict) -> dict:
    """Run the engine's validation; SpecError becomes InvalidInput with field details."""
    try:
        return mlp.validate_spec(raw_spec)
    except mlp.SpecError as exc:
        raise InvalidInput("invalid job spec", exc.errors) from None


def create_job(session: Session, settings: Settings, *, owner_id: str, dataset_id: str,
               name: str, raw_spec: dict, idempotency_key: str | None = None
               ) -> tuple[Job, bool]:
    """Validate and insert a queued job; returns (job, created).

    With an idempotency key, a repeat of the same request returns the first job
    (created=False); the same key with another body is refused.
    """
    request_hash = canonical_hash({"dataset_id": dataset_id, "name": name, "spec": raw_spec})
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, owner_id, idempotency_key, request_hash)
        if existing is not None:
            return existing, False
    job = new_job(session, settings, owner_id=owner_id, dataset_id=dataset_id, name=name,
                   raw_spec=raw_spec)
    job.idempotency_key, job.request_hash = idempotency_key, request_hash
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its job.
        existing = _by_idempotency_key(session, owner_id, idempotency_key, request_hash)
        if existing is None:
            raise
        return existing, False
    return job, True


def new_job(session: Session, settings: Settings, *, owner_id: str, dataset_id: str,
            name: str, raw_spec: dict) -> Job:
    """A validated, limit-checked, queued job, not yet added to the session."""
    spec = validate_job_spec(raw_spec)
    try:
        dataset = get_dataset(session, owner_id, dataset_id)
    except NotFound:
        raise InvalidInput(f"dataset {dataset_id} does not exist",
                           [("dataset_id", "no such dataset")]) from None
    try:
        mlp.check_data_fit(spec, n_features=dataset.n_features, task=dataset.task,
                           n_outputs=dataset.n_outputs)
    except mlp.SpecError as exc:
        raise InvalidInput("the spec does not fit the dataset", exc.errors) from None
    check_job_limits(session, settings, owner_id=owner_id, spec=spec, dataset=dataset)
    if spec["training"]["seed"] is None:
        # Stored, so the run can be reproduced even though the user did not choose it.
        spec["training"]["seed"] = secrets.randbelow(SEED_RANGE)
    return Job(owner_id=owner_id, dataset_id=dataset.id, name=name, spec=spec,
               epochs=spec["training"]["epochs"], status="queued", enqueued_at=utcnow(),
               manifest=build_manifest(spec, dataset, canonical_hash(spec)))


def _by_idempotency_key(session: Session, owner_id: str, key: str, request_hash: str
                        ) -> Job | None:
    job = session.scalar(select(Job).where(Job.owner_id == owner_id,
                                           Job.idempotency_key == key))
    if job is not None and job.request_hash != request_hash:
        raise InvalidInput("this Idempotency-Key was used with a different request body",
                           [("Idempotency-Key", "reused with another body")])
    return job


def get_job(session: Session, owner_id: str, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.owner_id != owner_id:
        raise NotFound(f"job {job_id} does not exist")
    return job


_VERSION = (Job.updated_at, Job.status, Job.epoch)
_JOB_VERSION = select(*_VERSION).where(Job.id == bindparam("job_id"),
                                       Job.owner_id == bindparam("owner_id"))


def job_version(conn: Session | Connection, owner_id: str, job_id: str) -> tuple | None:
    """What changes whenever anything shown about the job changes, or None if the user has
    no such job: every write to a job row sets `updated_at`, and a metric flush writes the
    job's progress in the same transaction as its rows. Built once: it runs per poll."""
    row = conn.execute(_JOB_VERSION, {"job_id": job_id, "owner_id": owner_id}).first()
    return None if row is None else tuple(row)


def version_of(job: Job) -> tuple:
    """`job_version` of a job already loaded."""
    return tuple(getattr(job, column.key) for column in _VERSION)


def list_jobs(session: Session, owner_id: str, *, status: str | None = None, limit: int = 50,
              cursor: str | None = None) -> tuple[list[Job], str | None]:
    """Newest first; returns one page and the cursor of the next page (or None)."""
    query = select(Job).where(Job.owner_id == owner_id)
    if status is not None:
        if status not in JOB_STATUSES:
            raise InvalidInput(f"unknown status {status!r}",
                               [("status", f"expected one of {', '.join(JOB_STATUSES)}")])
        query = query.where(Job.status == status)
    if cursor is not None:
        created, job_id = _decode_cursor(cursor)
        query = query.where(or_(Job.created_at < created,
                                and_(Job.created_at == created, Job.id < job_id)))
    rows = list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc())
                                .limit(limit + 1)))
    page = rows[:limit]
    more = len(rows) > limit
    return page, (_encode_cursor(page[-1]) if more else None)


def _encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        return datetime.fromisoformat(created), str(job_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("malformed cursor", [("cursor", str(exc))]) from None


def request_cancel(session: Session, owner_id: str, job_id: str) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next batch."""
    job = get_job(session, owner_id, job_id)
    if job.status in FINISHED_STATUSES:
        raise Conflict(f"job {job_id} already finished with status {job.status}")
    job.cancel_requested = True
    if job.status in ("queued", "waiting"):
        job.status, job.finished_at = "cancelled", utcnow()
    elif job.status == "running":
        job.status = "cancelling"
    return job
