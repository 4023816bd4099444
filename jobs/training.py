"""Running one job on a worker: claim, train with telemetry, checkpoint, finish.

`run_job` is what the Celery task calls. It owns its transactions (short ones: claim,
each metric flush, each checkpoint, finish) so a long training run never holds a
database transaction open.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

import mlp
from jobs.artifacts import CHECKPOINT, MODEL, load_artifact, save_artifact
from jobs.datasets import load_arrays
from jobs.db import session_scope
from jobs.heartbeat import Heartbeat
from jobs.lease import Lease, claim, finish
from jobs.manifest import runtime_manifest
from jobs.metric_writer import LeaseLost, MetricBuffer
from jobs.models import Dataset, Job
from jobs.settings import Settings
from jobs.storage import BlobStore
from jobs.summary import build_summary

log = logging.getLogger(__name__)


@dataclass
class StopFlags:
    """Why training should stop; read by the engine before every batch."""

    heartbeat: Heartbeat
    deadline: float
    shutdown: threading.Event
    reason: str | None = field(default=None)

    def __call__(self) -> bool:
        if self.heartbeat.lost:
            self.reason = "lease_lost"
        elif self.heartbeat.cancel_requested:
            self.reason = "cancelled"
        elif self.shutdown.is_set():
            self.reason = "shutdown"
        elif time.monotonic() > self.deadline:
            self.reason = "runtime"
        return self.reason is not None


@dataclass
class Prepared:
    lease: Lease
    trainer: mlp.Trainer
    max_runtime_s: float
    samples: int


def run_job(factory: sessionmaker[Session], settings: Settings, job_id: str, *,
            worker_id: str, shutdown: threading.Event | None = None) -> str:
    """Train `job_id` if this worker can claim it; returns what happened, for logs."""
    with session_scope(factory) as session:
        lease = claim(session, job_id, worker_id, ttl_s=settings.lease_ttl_s,
                      max_attempts=settings.max_attempts)
    if lease is None:
        return "not claimable"
    try:
        prepared = _prepare(factory, settings, lease)
    except mlp.SpecError as exc:
        return _fail(factory, lease, f"invalid spec: {exc}")
    return _train(factory, settings, prepared, shutdown or threading.Event())


def _prepare(factory: sessionmaker[Session], settings: Settings, lease: Lease) -> Prepared:
    with session_scope(factory) as session:
        job = session.get(Job, lease.job_id)
        dataset = session.get(Dataset, job.dataset_id)
        checkpoint = load_artifact(session, job.id, CHECKPOINT)
        job.manifest = {**(job.manifest or {}), **runtime_manifest(settings.blas_threads)}
        spec, state = job.spec, (checkpoint.data if checkpoint else None)
        limit = min(spec["training"].get("max_runtime_s") or settings.max_runtime_s,
                    settings.max_runtime_s)
    X, y = load_arrays(BlobStore(settings.storage_dir), dataset)
    n_classes = dataset.n_outputs if dataset.task == "classification" else None
    if state is not None:
        trainer = mlp.Trainer.from_state(spec, X, y, state, n_classes=n_classes)
    else:
        trainer = mlp.Trainer(spec, X, y, n_classes=n_classes)
    return Prepared(lease, trainer, limit, len(X))


def _train(factory: sessionmaker[Session], settings: Settings, prepared: Prepared,
           shutdown: threading.Event) -> str:
    lease, trainer = prepared.lease, prepared.trainer
    heartbeat = Heartbeat(factory, lease, ttl_s=settings.lease_ttl_s,
                          every_s=settings.heartbeat_s)
    flags = StopFlags(heartbeat, time.monotonic() + prepared.max_runtime_s, shutdown)
    buffer = MetricBuffer(factory, lease, flush_seconds=settings.metrics_flush_seconds,
                          flush_rows=settings.metrics_flush_rows)
    checkpoints = _Checkpointer(factory, lease, trainer, settings.checkpoint_interval_s)
    started = time.monotonic()
    heartbeat.start()
    try:
        result = trainer.fit(on_epoch=lambda r: (buffer.add(r.to_dict()), checkpoints.maybe()),
                             should_stop=flags)
        buffer.flush(trainer.epoch)
    except LeaseLost:
        return "lease lost"
    except mlp.DivergenceError as exc:
        buffer.flush(trainer.epoch)
        return _fail(factory, lease, str(exc))
    finally:
        heartbeat.stop()
    seconds = time.monotonic() - started
    if result.stopped:
        return _stopped(factory, lease, trainer, checkpoints, flags.reason, prepared)
    return _succeed(factory, lease, trainer, result, seconds, prepared.samples)


class _Checkpointer:
    """Saves the engine state every `interval` seconds of training, and on demand."""

    def __init__(self, factory, lease: Lease, trainer: mlp.Trainer, interval: float):
        self._factory, self._lease, self._trainer = factory, lease, trainer
        self._interval, self._last = interval, time.monotonic()

    def maybe(self) -> None:
        if time.monotonic() - self._last >= self._interval:
            self.save()

    def save(self) -> None:
        with session_scope(self._factory) as session:
            save_artifact(session, self._lease, kind=CHECKPOINT, epoch=self._trainer.epoch,
                          data=self._trainer.state_bytes())
        self._last = time.monotonic()


def _stopped(factory, lease: Lease, trainer: mlp.Trainer, checkpoints: _Checkpointer,
             reason: str | None, prepared: Prepared) -> str:
    if reason == "lease_lost":
        return "lease lost"
    try:
        checkpoints.save()
    except LeaseLost:
        return "lease lost"
    with session_scope(factory) as session:
        if reason == "cancelled":
            finish(session, lease, status="cancelled")
        elif reason == "shutdown":
            finish(session, lease, status="queued")
        else:
            finish(session, lease, status="failed",
                   error=f"stopped at epoch {trainer.epoch}: the runtime limit of "
                         f"{prepared.max_runtime_s:g} s (training.max_runtime_s) was reached")
    return reason or "stopped"


def _succeed(factory, lease: Lease, trainer: mlp.Trainer, result: mlp.FitResult,
             seconds: float, samples: int) -> str:
    with session_scope(factory) as session:
        save_artifact(session, lease, kind=MODEL, epoch=trainer.epoch,
                      data=trainer.model().to_bytes())
        finish(session, lease, status="succeeded",
               summary=build_summary(session, lease.job_id, result, seconds, samples))
    return "succeeded"


def _fail(factory, lease: Lease, message: str) -> str:
    with session_scope(factory) as session:
        finish(session, lease, status="failed", error=message)
    return "failed"
