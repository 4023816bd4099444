"""Running one job on a worker: claim, train with telemetry, checkpoint, finish.

`run_job` is what the Celery task calls. It owns its transactions (short ones: claim,
each metric flush, each checkpoint, finish) so a long training run never holds a
database transaction open. Every write after the claim is fenced by the lease and
retried through database errors until the heartbeat declares the lease lost.

Outcomes and retries:
- divergence, an invalid spec, unreadable data or any other non-database error fail the
  job at once: running it again would fail the same way;
- a database outage longer than the lease, or the worker dying, leaves the lease to
  expire; the reaper (jobs/reaper.py) re-queues the job, which resumes from its last
  checkpoint, at most `max_attempts` times;
- cancel, SIGTERM and the runtime limit stop training at the next batch, after a
  final checkpoint.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import mlp
from jobs.artifacts import MODEL, save_artifact
from jobs.checkpoint_store import CheckpointStore
from jobs.datasets import load_arrays
from jobs.db import session_scope
from jobs.db_retry import Backoff, is_transient, retry_db
from jobs.gradcheck_store import GradcheckRecorder
from jobs.heartbeat import Heartbeat
from jobs.lease import Lease, LeaseLost, claim, finish, hand_back, hold
from jobs.manifest import runtime_manifest
from jobs.metric_archive import archive_finished
from jobs.metric_writer import MetricBuffer, WrittenRows
from jobs.models import Dataset, Job
from jobs.settings import Settings
from jobs.storage import BlobStore
from jobs.summary import build_summary

log = logging.getLogger(__name__)

HANDED_BACK = "handed back"
LEASE_LOST = "lease lost"
# Numbers (keys and values) of metric rows kept for the archive, 32 MB; a longer history
# is archived from its stored rows, as a resumed or unfinished one is.
ARCHIVE_FROM_MEMORY = 4_000_000


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
class Run:
    """One attempt at a job: what every step after the claim needs."""

    factory: sessionmaker[Session]
    settings: Settings
    lease: Lease
    heartbeat: Heartbeat
    store: CheckpointStore
    name: str = ""
    trainer: mlp.Trainer | None = None
    max_runtime_s: float = 0.0
    used_s: float = 0.0  # training seconds of earlier attempts, up to their checkpoint
    samples: int = 0
    # No checkpoint and no stored rows (each flush moves the job's epoch): this attempt
    # writes every metric row the job will have.
    from_scratch: bool = False
    written: WrittenRows | None = None  # every metric row of the job, once it succeeded

    def lease_lost(self) -> bool:
        return self.heartbeat.lost

    def write(self, what: str, action: Callable[[Session], object]) -> object:
        """One transaction, retried through database errors while the lease lasts."""
        def attempt():
            with session_scope(self.factory) as session:
                return action(session)
        return retry_db(attempt, lease_lost=self.lease_lost, what=f"{what} of {self.lease.job_id}")


def run_job(factory: sessionmaker[Session], settings: Settings, job_id: str, *,
            worker_id: str, shutdown: threading.Event | None = None,
            on_start: Callable[[str], None] | None = None) -> str:
    """Train `job_id` if this worker can claim it; returns what happened, for logs.

    `on_start(job_name)` runs once the job is claimed and loaded (fault injection).
    """
    with session_scope(factory) as session:
        lease = claim(session, job_id, worker_id, ttl_s=settings.lease_ttl_s,
                      max_attempts=settings.max_attempts)
    if lease is None:
        return "not claimable"
    # Beat from the claim on: loading a big dataset must not let the lease lapse.
    heartbeat = Heartbeat(factory, lease, ttl_s=settings.lease_ttl_s, every_s=settings.heartbeat_s)
    heartbeat.start()
    run = Run(factory, settings, lease, heartbeat, CheckpointStore(settings))
    try:
        outcome = _attempt(run, shutdown or threading.Event(), on_start)
    except LeaseLost:
        log.warning("job %s: lease %d lost; another worker owns it", job_id, lease.epoch)
        return LEASE_LOST
    finally:
        heartbeat.stop()
    archive_finished(factory, job_id, run.written)  # only if now final (not handed back)
    return outcome


def _attempt(run: Run, shutdown: threading.Event,
             on_start: Callable[[str], None] | None) -> str:
    try:
        retry_db(lambda: _prepare(run), lease_lost=run.lease_lost,
                 what=f"loading {run.lease.job_id}")
    except mlp.SpecError as exc:
        return _fail(run, f"invalid spec: {exc}")
    except LeaseLost:
        raise
    except Exception as exc:
        log.exception("job %s could not start", run.lease.job_id)
        return _fail(run, f"could not start: {exc.__class__.__name__}: {exc}")
    if on_start is not None:
        on_start(run.name)
    try:
        return _train(run, shutdown)
    except LeaseLost:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        log.exception("job %s failed in training", run.lease.job_id)
        return _fail(run, f"worker error: {exc.__class__.__name__}: {exc}")


def _prepare(run: Run) -> None:
    settings = run.settings
    with session_scope(run.factory) as session:
        job = session.get(Job, run.lease.job_id)
        dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
        if dataset is None:
            raise FileNotFoundError("the job's dataset was deleted")
        checkpoint = run.store.load(session, job)
        hold(session, run.lease, manifest={**(job.manifest or {}),
                                           **runtime_manifest(settings.blas_threads)})
        spec, run.name, run.used_s = job.spec, job.name, job.run_seconds or 0.0
        run.from_scratch = checkpoint is None and not job.epoch
        requested = spec["training"].get("max_runtime_s") or settings.max_runtime_s
        run.max_runtime_s = min(requested, settings.max_runtime_s)
    X, y = load_arrays(BlobStore(settings.storage_dir), dataset)
    n_classes = dataset.n_outputs if dataset.task == "classification" else None
    if checkpoint is not None:
        run.trainer = mlp.Trainer.from_state(spec, X, y, checkpoint.data, n_classes=n_classes)
    else:
        run.trainer = mlp.Trainer(spec, X, y, n_classes=n_classes)
    run.samples = len(X)


def _train(run: Run, shutdown: threading.Event) -> str:
    trainer, settings = run.trainer, run.settings
    started = time.monotonic()
    flags = StopFlags(run.heartbeat, started + run.max_runtime_s - run.used_s, shutdown)
    # Background flushes: a database server works on another core while training goes
    # on; SQLite's writes run in this process and gain nothing from a thread
    # (bench/e2e_overhead.py). Kept rows: an attempt that writes every row the job has
    # archives them from what it wrote (not after an earlier attempt stored rows: those
    # are kept over this one's, and another machine may differ in the last bits).
    buffer = MetricBuffer(run.factory, run.lease, flush_seconds=settings.metrics_flush_seconds,
                          flush_rows=settings.metrics_flush_rows,
                          background=settings.on_postgres,
                          written=WrittenRows(ARCHIVE_FROM_MEMORY) if run.from_scratch else None)
    checkpoints = _Checkpointer(run, buffer, started, settings.checkpoint_interval_s)
    gradchecks = GradcheckRecorder(run.factory, settings, run.lease, trainer, run.lease_lost)
    try:
        result = trainer.fit(on_epoch=lambda r: (buffer.add(r), gradchecks.maybe(
                                 r, trainer), checkpoints.maybe()),
                             should_stop=flags)
    except mlp.DivergenceError as exc:
        buffer.drain(trainer.epoch, run.lease_lost)
        return _fail(run, str(exc))
    if flags.reason == "lease_lost":
        return LEASE_LOST
    if result.stopped:
        buffer.drain(trainer.epoch, run.lease_lost)
        return _stopped(run, checkpoints, flags.reason)
    buffer.settle()
    return _succeed(run, buffer, result, time.monotonic() - started)


class _Checkpointer:
    """Saves the engine state every `interval` seconds of training, and on demand.

    The buffered metrics are committed first: a checkpoint must never be ahead of the
    stored metrics, or a resume from it would skip the epochs in between for good.
    """

    def __init__(self, run: Run, buffer: MetricBuffer, started: float, interval: float):
        self._run, self._buffer, self._started, self._interval = run, buffer, started, interval
        self._last = time.monotonic()
        self._backoff = Backoff()

    def _save_once(self) -> None:
        run = self._run
        self._buffer.flush(run.trainer.epoch)
        run.store.save(run.factory, run.lease, epoch=run.trainer.epoch,
                       data=run.trainer.state_bytes(),
                       run_seconds=run.used_s + time.monotonic() - self._started)
        self._last = time.monotonic()

    def maybe(self) -> None:
        if time.monotonic() - self._last < self._interval or not self._backoff.ready():
            return
        try:
            self._save_once()
            self._backoff.succeeded()
        except Exception as exc:
            if not is_transient(exc):
                raise
            # Training goes on; the previous checkpoint stays valid.
            log.warning("checkpoint of %s failed (%s); retry in %.2f s", self._run.lease.job_id,
                        exc.__class__.__name__, self._backoff.failed())

    def save(self) -> None:
        retry_db(self._save_once, lease_lost=self._run.lease_lost,
                 what=f"checkpoint of {self._run.lease.job_id}")


def _stopped(run: Run, checkpoints: _Checkpointer, reason: str | None) -> str:
    checkpoints.save()
    lease, epoch = run.lease, run.trainer.epoch
    if reason == "cancelled":
        run.write("cancel", lambda s: finish(s, lease, status="cancelled"))
        return "cancelled"
    if reason == "shutdown":
        run.write("hand-back", lambda s: hand_back(s, lease))
        return HANDED_BACK
    message = (f"stopped at epoch {epoch}: the runtime limit of {run.max_runtime_s:g} s "
               f"(training.max_runtime_s) was reached; the metrics so far are kept")
    run.write("runtime stop", lambda s: finish(s, lease, status="failed", error=message))
    return "failed"


def _succeed(run: Run, buffer: MetricBuffer, result: mlp.FitResult, seconds: float) -> str:
    """The last metrics, the model and the final status in one transaction."""
    lease, trainer = run.lease, run.trainer
    model = trainer.model().to_bytes()

    def commit(session: Session) -> str | None:
        buffer.write_pending(session, trainer.epoch)
        key = session.scalar(select(Job.checkpoint_uri).where(Job.id == lease.job_id))
        save_artifact(session, lease, kind=MODEL, epoch=trainer.epoch, data=model)
        finish(session, lease, status="succeeded",
               summary=build_summary(session, lease.job_id, result, seconds, run.samples))
        return key

    key = run.write("success", commit)
    buffer.pending_committed()
    run.written = buffer.written
    run.store.discard(key)
    return "succeeded"


def _fail(run: Run, message: str) -> str:
    run.write("failure", lambda s: finish(s, run.lease, status="failed", error=message))
    return "failed"
