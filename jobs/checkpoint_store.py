"""Where training checkpoints live: the database, or a folder shared by all workers.

`checkpoint_storage="database"` keeps the engine state in the job's `artifacts` row:
nothing else to deploy, fine for small networks. `"folder"` writes it under
`<storage_dir>/checkpoints/` (the folder every worker already shares for datasets), so
big states stay out of the database. A folder write is durable before it is used: a
temporary file, fsync, `os.replace`, fsync of the folder (jobs.storage). Each write gets
a new name, and only a fenced UPDATE of the job row makes it current, so a worker that
lost its lease can write a file but never make anyone resume from it.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from jobs.artifacts import CHECKPOINT, load_artifact, save_artifact
from jobs.db import session_scope
from jobs.lease import Lease, hold
from jobs.models import Artifact, Job
from jobs.settings import Settings
from jobs.storage import BlobStore

log = logging.getLogger(__name__)
FOLDER_KIND = "checkpoints"


@dataclass(frozen=True)
class Checkpoint:
    data: bytes


class CheckpointStore:
    def __init__(self, settings: Settings):
        self._mode = settings.checkpoint_storage
        self._files = BlobStore(settings.storage_dir)

    def save(self, factory: sessionmaker[Session], lease: Lease, *, epoch: int, data: bytes,
             run_seconds: float) -> None:
        """Make `data` the job's checkpoint; LeaseLost if the lease is gone."""
        if self._mode == "database":
            with session_scope(factory) as session:
                save_artifact(session, lease, kind=CHECKPOINT, epoch=epoch, data=data,
                              checkpoint_uri=None, run_seconds=run_seconds)
            return
        key = f"{lease.job_id}.{lease.epoch}.{uuid.uuid4().hex[:12]}"
        self._files.put_file(FOLDER_KIND, key, data)
        try:
            with session_scope(factory) as session:
                old = session.scalar(select(Job.checkpoint_uri).where(Job.id == lease.job_id))
                hold(session, lease, epoch=epoch, checkpoint_uri=key, run_seconds=run_seconds)
                # A stale database copy must not outlive the folder one.
                session.execute(delete(Artifact).where(Artifact.job_id == lease.job_id,
                                                       Artifact.kind == CHECKPOINT))
        except BaseException:
            self._files.delete_file(FOLDER_KIND, key)
            raise
        if old and old != key:
            self._files.delete_file(FOLDER_KIND, old)

    def load(self, session: Session, job: Job) -> Checkpoint | None:
        """The job's last checkpoint, or None (start from scratch, as deterministic)."""
        if job.checkpoint_uri:
            try:
                data = self._files.read_file(FOLDER_KIND, job.checkpoint_uri)
            except FileNotFoundError:
                # Retraining from epoch 0 reproduces the same run, only slower.
                log.warning("checkpoint %s of job %s is missing; starting over",
                            job.checkpoint_uri, job.id)
                return None
            return Checkpoint(data)
        artifact = load_artifact(session, job.id, CHECKPOINT)
        if artifact is None:
            return None
        return Checkpoint(artifact.data)

    def discard(self, key: str | None) -> None:
        """Remove a succeeded job's checkpoint file; it will never be resumed."""
        if key:
            self._files.delete_file(FOLDER_KIND, key)

