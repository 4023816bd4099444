"""The database schema: the one module that defines tables.

Ids are random UUIDs (as text, portable across SQLite and PostgreSQL). Every row a user
can reach carries `owner_id`, and every query in `jobs/` filters by it.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer,
                        LargeBinary, String, Text, UniqueConstraint, event, func)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = JSON().with_variant(JSONB(), "postgresql")

# "waiting": a sweep trial held back until a running trial of its sweep finishes.
JOB_STATUSES = ("waiting", "queued", "running", "cancelling", "cancelled", "succeeded", "failed")
ACTIVE_STATUSES = ("queued", "running", "cancelling")
FINISHED_STATUSES = ("cancelled", "succeeded", "failed")


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Token(Base):
    """An API token; only its peppered SHA-256 is stored."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Dataset(Base):
    """A user's dataset; the arrays live once per content hash in blob storage."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    n_samples: Mapped[int] = mapped_column(Integer)
    n_features: Mapped[int] = mapped_column(Integer)
    n_outputs: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(20))
    classes: Mapped[list | None] = mapped_column(JSONType)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    """A training job. This row, not the broker, is the truth about the job's state."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner_id", "idempotency_key", name="uq_jobs_owner_idempotency"),
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Kept NULL after the dataset is deleted; the manifest still names its sha256.
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="queued")
    spec: Mapped[dict] = mapped_column(JSONType)
    epochs: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict | None] = mapped_column(JSONType)
    manifest: Mapped[dict | None] = mapped_column(JSONType)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # Lease: who runs the job, fenced by an increasing lease number, expiring by DB clock.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # --- Reliability (issue 5): where the last checkpoint is, and training time used. ---
    # A key in the shared checkpoint folder (checkpoint_storage="folder"); NULL when the
    # checkpoint is the `artifacts` row. Written only under the lease, so a zombie worker's
    # file is never pointed at.
    checkpoint_uri: Mapped[str | None] = mapped_column(String(300))
    # Seconds of training up to the last checkpoint, summed over attempts (runtime limit).
    run_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # --- end reliability block ---
    # Sweeps (issue 7): the sweep this job is a trial of, if any.
    sweep_id: Mapped[str | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="SET NULL"), index=True)
    sweep_trial: Mapped[int | None] = mapped_column(Integer)  # 0-based order in the sweep
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, server_default=func.now())


class EpochMetric(Base):
    """One recorded epoch of a job; (job, epoch) is unique so a retry cannot duplicate it.

    No foreign key to `jobs` (see METRIC_CLEANUP below).
    """

    __tablename__ = "epoch_metrics"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)
    # Every layer's telemetry of the epoch, one float64 table (jobs/layer_values.py).
    layers: Mapped[bytes | None] = mapped_column(LargeBinary)


# The metric table carries no foreign key: a per-row check against `jobs` was about 40 % of
# the database's time to insert an XOR run's 8000 metric rows, and the only writer already
# proves the job exists in the same transaction (metric_writer: the fenced UPDATE of the
# job row comes first and locks it). Deleting a job still deletes its metrics, through
# this trigger, which costs nothing on insert (migrations 0002 and 0005 hold the DDL of
# their revisions).
METRIC_CLEANUP = {
    "postgresql": (
        "CREATE OR REPLACE FUNCTION gradtrace_delete_job_metrics() RETURNS trigger AS $$ BEGIN "
        "DELETE FROM epoch_metrics WHERE job_id = OLD.id; RETURN OLD; END $$ LANGUAGE plpgsql",
        "CREATE OR REPLACE TRIGGER jobs_delete_metrics AFTER DELETE ON jobs FOR EACH ROW "
        "EXECUTE FUNCTION gradtrace_delete_job_metrics()"),
    "sqlite": (
        "CREATE TRIGGER IF NOT EXISTS jobs_delete_metrics AFTER DELETE ON jobs FOR EACH ROW BEGIN "
        "DELETE FROM epoch_metrics WHERE job_id = OLD.id; END",),
}


# Every committed change of a job row is announced on this channel with the job's id, for
# the API processes' poll caches (jobs/change_feed.py): anything a job's answers show
# changes with its row (a metric flush updates the row's progress in its transaction).
# PostgreSQL only; SQLite deployments are one process, which validates its cache itself.
# Migration 0003 creates it from here too.
JOB_CHANGED_CHANNEL = "gradtrace_job_changed"
JOB_CHANGE_NOTIFY = {
    "postgresql": (
        "CREATE OR REPLACE FUNCTION gradtrace_notify_job_changed() RETURNS trigger AS $$ BEGIN "
        f"PERFORM pg_notify('{JOB_CHANGED_CHANNEL}', COALESCE(NEW.id, OLD.id)); RETURN NULL; "
        "END $$ LANGUAGE plpgsql",
        "CREATE OR REPLACE TRIGGER jobs_notify_changed AFTER UPDATE OR DELETE ON jobs "
        "FOR EACH ROW EXECUTE FUNCTION gradtrace_notify_job_changed()"),
}


# Artifacts (checkpoints, models, metric archives) are compressed with lz4 where the
# server has it (PostgreSQL 14+ built with lz4, as Debian's packages are): pglz, the
# default, cost 65-90 ms of the database's time to store an XOR run's 1.5 MB archive,
# lz4 12-17 ms, for 15 % more room (docs/service-performance.md). Rows stored before
# keep the compression they were stored with. (EXECUTE: a server before 14 would reject
# the ALTER when compiling the block, guard or not.) Migration 0004 runs it from here too.
ARTIFACT_COMPRESSION = {
    "postgresql": (
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_settings WHERE name = "
        "'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN "
        "EXECUTE 'ALTER TABLE artifacts ALTER COLUMN data SET COMPRESSION lz4'; "
        "END IF; END $$",),
}


@event.listens_for(Base.metadata, "after_create")
def _create_triggers(target, connection, **_kw) -> None:
    for ddl in (METRIC_CLEANUP, JOB_CHANGE_NOTIFY, ARTIFACT_COMPRESSION):
        for statement in ddl.get(connection.dialect.name, ()):
            connection.exec_driver_sql(statement)


class Artifact(Base):
    """Binary state of a job: the latest training checkpoint and the final model."""

    __tablename__ = "artifacts"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)  # "checkpoint" | "model"
    epoch: Mapped[int] = mapped_column(Integer)
    lease_epoch: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- Sweeps (issue 7) -------------------------------------------------------------------

class Sweep(Base):
    """A hyper-parameter search; its trials are ordinary jobs pointing back here."""

    __tablename__ = "sweeps"
    __table_args__ = (Index("ix_sweeps_owner_created", "owner_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200), default="")
    base: Mapped[dict] = mapped_column(JSONType)
    search: Mapped[dict] = mapped_column(JSONType)
    metric: Mapped[str] = mapped_column(String(40))
    goal: Mapped[str] = mapped_column(String(10))
    max_trials: Mapped[int] = mapped_column(Integer)
    parallel_trials: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- Backprop introspection (issue 9) ---------------------------------------------------

class GradientCheck(Base):
    """Per-layer relative error of backprop against finite differences at one epoch.

    Written during training when the spec asks for `diagnostics.gradient_check`;
    (job, epoch, layer) is unique so a resumed run cannot duplicate a row.
    """

    __tablename__ = "gradient_checks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer: Mapped[int] = mapped_column(Integer, primary_key=True)
    weight_rel_error: Mapped[float | None] = mapped_column(Float)
    bias_rel_error: Mapped[float | None] = mapped_column(Float)
