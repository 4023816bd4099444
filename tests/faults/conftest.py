"""The fault suite's stack: PostgreSQL, Redis, the API over HTTP and supervised workers.

Every scenario module builds its own stack (`make_stack`) with short reliability
settings, so a fault takes seconds to recover from instead of minutes: lease TTL 2 s,
heartbeat 0.3 s, reaper every 0.5 s, checkpoint every 0.2 s of training. Workers are
real `celery worker` processes; a supervisor restarts any that die, as a container
restart policy would. Each scenario's figures are printed at the end of the run.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.models import Job
from jobs.settings import Settings
from tests.factories import make_token
from tests.faults.reconcile import (
    Figures,
    duplicate_metric_rows,
    matches_reference,
    missing_epochs,
)
from tests.integration.services import (
    HttpServer,
    WorkerProcess,
    fresh_postgres_database,
    migrate,
    redis_url,
    unique_queue,
)

REDIS_DB = 12
FAST = {"lease_ttl_s": 2.0, "heartbeat_s": 0.3, "reaper_interval_s": 0.5,
        "checkpoint_interval_s": 0.2, "requeue_queued_after_s": 5.0,
        "visibility_timeout_s": 30.0, "metrics_flush_seconds": 0.1}
FAULT_SPEC = {
    "network": {"layers": [{"units": 16, "activation": "tanh"},
                           {"units": 16, "activation": "tanh"},
                           {"units": 2, "activation": "softmax"}]},
    "loss": "cross_entropy",
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 300, "batch_size": 4, "seed": 3},
}
FIGURES: list[Figures] = []


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("fault suite figures")
    for figures in FIGURES:
        terminalreporter.write_line(figures.line())
    report = os.environ.get("GRADTRACE_FAULT_REPORT")
    if report:
        Path(report).write_text("\n".join(f.line() for f in FIGURES) + "\n")


def _env(settings: Settings) -> dict:
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "CELERY_BROKER_URL": settings.broker_url,
           "GRADTRACE_STATE_DIR": str(settings.state_dir),
           "GRADTRACE_STORAGE_DIR": str(settings.storage_dir),
           "GRADTRACE_TOKEN_PEPPER": settings.token_pepper,
           "GRADTRACE_QUEUE": settings.queue,
           "GRADTRACE_CHECKPOINT_STORAGE": settings.checkpoint_storage,
           "GRADTRACE_FAULT_INJECTION": settings.fault_injection}
    env.update({f"GRADTRACE_{k.upper()}": str(getattr(settings, k)) for k in FAST})
    return env


@dataclass
class FaultStack:
    settings: Settings
    server: HttpServer
    factory: object
    log_dir: Path
    env: dict
    workers: dict = field(default_factory=dict)  # name -> WorkerProcess
    restarts: int = 0
    _serial: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _supervising: threading.Event = field(default_factory=threading.Event)

    def client(self, name: str = "alice"):
        return self.server.client(make_token(self.factory, self.settings.token_pepper, name))

    def start_worker(self, base: str = "w", wait: bool = True) -> WorkerProcess:
        with self._lock:
            self._serial += 1
            name = f"{base}{self._serial}"
            worker = WorkerProcess(self.env, name, self.log_dir)
            self.workers[name] = worker
        if wait:
            worker.wait_ready()
        return worker

    def worker_holding(self, job_id: str) -> WorkerProcess | None:
        owner = self.job(job_id).lease_owner or ""
        return self.workers.get(owner.split("@", 1)[0])

    def supervise(self, count: int, base: str = "w") -> None:
        """Keep `count` workers alive, restarting any that die (a restart policy)."""
        for _ in range(count):
            self.start_worker(base)
        self._supervising.set()

        def loop():
            while self._supervising.is_set():
                for name, worker in list(self.workers.items()):
                    if worker.proc.poll() is not None and not getattr(worker, "replaced", False):
                        worker.replaced = True
                        self.restarts += 1
                        self.start_worker(base, wait=False)
                time.sleep(0.1)
        threading.Thread(target=loop, daemon=True).start()

    def stop_workers(self) -> None:
        self._supervising.clear()
        for worker in self.workers.values():
            worker.stop()

    def job(self, job_id: str) -> Job:
        with session_scope(self.factory) as session:
            return session.get(Job, job_id)

    def wait(self, job_ids, statuses=("succeeded", "failed", "cancelled"), timeout=120.0):
        deadline = time.monotonic() + timeout
        pending = set(job_ids)
        while pending and time.monotonic() < deadline:
            with session_scope(self.factory) as session:
                done = session.scalars(select(Job.id).where(Job.id.in_(pending),
                                                            Job.status.in_(statuses))).all()
            pending -= set(done)
            time.sleep(0.1)
        assert not pending, f"jobs not finished in {timeout} s: " + ", ".join(
            f"{j}={self.job(j).status}" for j in pending)

    def reconcile(self, scenario: str, accepted: list[str], **extra) -> Figures:
        """Check every accepted job against the final state; record the figures."""
        figures = Figures(scenario, accepted=len(accepted), **extra)
        with session_scope(self.factory) as session:
            for job_id in accepted:
                job = session.get(Job, job_id)
                if job.status != "succeeded":
                    continue
                figures.completed += 1
                figures.compared += 1
                assert missing_epochs(session, job_id, job.epochs) == []
                figures.identical += matches_reference(session, self.settings.storage_dir,
                                                       job_id)
            figures.duplicates = duplicate_metric_rows(session)
        FIGURES.append(figures)
        print(figures.line())
        return figures


def submit(client, dataset_id: str, name: str = "fault", **training) -> str:
    body = {"dataset_id": dataset_id, "name": name, **FAULT_SPEC,
            "training": {**FAULT_SPEC["training"], **training}}
    resp = client.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def create_dataset(client) -> str:
    resp = client.post("/v1/datasets", json={"name": "moons", "builtin": "moons",
                                             "n_samples": 200})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


@pytest.fixture(scope="module")
def make_stack(tmp_path_factory):
    """make_stack(broker_url=None, **settings) -> a FaultStack torn down with the module."""
    from service import create_app

    with ExitStack() as cleanup:
        def build(broker_url: str | None = None, **overrides) -> FaultStack:
            tmp = tmp_path_factory.mktemp("faults")
            db_url = cleanup.enter_context(fresh_postgres_database())
            settings = Settings.from_env(
                state_dir=tmp / "state", database_url=db_url,
                broker_url=broker_url or redis_url(REDIS_DB), storage_dir=tmp / "storage",
                token_pepper="faults-pepper", queue=unique_queue(), **{**FAST, **overrides})
            settings.ensure_dirs()
            migrate(db_url)
            engine = make_engine(db_url)
            cleanup.callback(engine.dispose)
            server = HttpServer(create_app(settings))
            cleanup.callback(server.stop)
            stack = FaultStack(settings, server, make_sessionmaker(engine), tmp, _env(settings))
            cleanup.callback(stack.stop_workers)
            return stack
        yield build
