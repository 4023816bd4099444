"""End-to-end training overhead: the API and a worker against the engine alone (issue 8, target 1).

The same spec, data and seed are trained (a) by `mlp.Trainer` in this process, with the
worker's BLAS thread count, and (b) through the whole service: `POST /v1/jobs` over real
HTTP to the Flask app (werkzeug, threaded, in this process), the broker, a real
`celery -A worker.entry worker` process (concurrency 1, as docker-compose.yml runs it),
metrics recorded every epoch and checkpoints on. Repetitions of (a) and (b) alternate and
the best of each is kept, so the ratios hold on a shared machine.

Times reported for (b):
- `job`: the job row's `started_at` -> `finished_at`, both by the database clock: the
  claim, dataset load, training with every metric flush and checkpoint, the final flush,
  the model artifact and the finishing write. The target is on this one.
- `fit`: the worker's own `summary.training_seconds` (the training loop alone).
- `total`: the client's 202 -> `succeeded` seen by a 10 ms database poll (adds the
  queue latency and the poll's resolution).
- `cpu`: CPU seconds the worker process used from the submit to `succeeded` (utime +
  stime from /proc, 10 ms ticks; every thread: training, metric flushes, heartbeat, the
  consumer's broker polling), against the engine's own `time.process_time()`. Another
  engineer's load on the shared machine inflates wall times but hardly CPU times.

    .venv/bin/python bench/e2e_overhead.py                   # both stacks, best of 3
    .venv/bin/python bench/e2e_overhead.py --quick           # shorter runs, best of 2
    .venv/bin/python bench/e2e_overhead.py --stacks embedded --workloads xor
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

# The worker sets BLAS threads from Settings.blas_threads (default 1) before numpy loads;
# the engine-alone peer must run under the same count.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from sqlalchemy import select, text  # noqa: E402

import mlp  # noqa: E402
from gradtrace.client import Client  # noqa: E402
from jobs.clock import aware  # noqa: E402
from proc_cpu import process_cpu  # noqa: E402
from jobs.db import make_engine, make_sessionmaker, session_scope  # noqa: E402
from jobs.models import Job  # noqa: E402
from jobs.settings import Settings  # noqa: E402
from service import create_app  # noqa: E402
from tests.factories import make_token  # noqa: E402
from tests.integration.services import (HttpServer, WorkerProcess,  # noqa: E402
                                        fresh_postgres_database, migrate, redis_url,
                                        unique_queue, worker_env)

REDIS_DB = 13
FINAL = {"succeeded", "failed", "cancelled"}


def medium_spec(epochs: int) -> dict:
    """bench/engine.py's "medium" network: 64-128-64-10, batch 64, Adam."""
    return {"network": {"layers": [{"units": 128, "activation": "relu"},
                                   {"units": 64, "activation": "relu"},
                                   {"units": 10, "activation": "softmax"}]},
            "loss": "cross_entropy", "optimizer": {"name": "adam", "learning_rate": 0.001},
            "training": {"epochs": epochs, "batch_size": 64, "seed": 0},
            "record": {"every_epochs": 1}}


def xor_spec(epochs: int) -> dict:
    """2-16-16-1 on the four XOR points, batch 4: one batch per epoch, all overhead."""
    return {"network": {"layers": [{"units": 16, "activation": "tanh"},
                                   {"units": 16, "activation": "tanh"},
                                   {"units": 1, "activation": "sigmoid"}]},
            "loss": "binary_cross_entropy", "optimizer": {"name": "sgd", "learning_rate": 0.5},
            "training": {"epochs": epochs, "batch_size": 4, "seed": 0},
            "record": {"every_epochs": 1}}


def medium_data() -> tuple[np.ndarray, np.ndarray]:
    """bench/engine.py's medium data: 20,000 x 64 normal inputs, labels of a random teacher."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 64))
    return X, np.argmax(X @ rng.normal(size=(64, 10)), axis=1)


@dataclass
class Service:
    """One running stack: settings, a session factory, an API client, one worker."""

    kind: str
    settings: Settings
    factory: object
    client: Client
    worker: WorkerProcess


@contextmanager
def service_stack(kind: str, tmp: Path, **overrides):
    """PostgreSQL + Redis or the embedded default, migrated, the API over HTTP, one worker."""
    with ExitStack() as stack:
        if kind == "embedded":
            db_url, broker = f"sqlite:///{tmp / 'gradtrace.db'}", f"sqla+sqlite:///{tmp / 'broker.db'}"
        else:
            db_url, broker = stack.enter_context(fresh_postgres_database()), redis_url(REDIS_DB)
        settings = Settings.from_env(state_dir=tmp / "state", database_url=db_url,
                                     broker_url=broker, storage_dir=tmp / "storage",
                                     token_pepper="bench-pepper", queue=unique_queue(),
                                     **overrides)
        settings.ensure_dirs()
        migrate(db_url)
        engine = make_engine(db_url)
        stack.callback(engine.dispose)
        factory = make_sessionmaker(engine)
        server = HttpServer(create_app(settings))
        stack.callback(server.stop)
        client = Client(server.url, token=make_token(factory, settings.token_pepper, "bench"))
        env = worker_env(settings)
        env["GRADTRACE_BLAS_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"]
        env.update({f"GRADTRACE_{k.upper()}": str(v) for k, v in overrides.items()})
        worker = WorkerProcess(env, f"bench-{kind.replace('+', '-')}", tmp)
        stack.callback(worker.stop)
        worker.wait_ready()
        yield Service(kind, settings, factory, client, worker)


def job_row(factory, job_id: str) -> Job:
    with session_scope(factory) as session:
        return session.scalars(select(Job).where(Job.id == job_id)).one()


def wait_final(factory, job_id: str, poll_s: float, timeout: float = 600) -> tuple[Job, float]:
    """Poll the job's status until it is final; returns the job row and the wall time the
    final status was seen.

    The poll is one status-only statement on a connection held for the whole wait: an ORM
    load of the row every 10 ms cost this process about a quarter of a core, taken from
    the worker and the database on a 2-core machine while they were being measured.
    """
    status = text("SELECT status FROM jobs WHERE id = :id")
    deadline = time.monotonic() + timeout
    with factory.kw["bind"].connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(status, {"id": job_id}).scalar_one() in FINAL:
                seen = time.time()
                return job_row(factory, job_id), seen
            conn.rollback()  # a fresh snapshot next time, whatever the isolation level
            time.sleep(poll_s)
    raise TimeoutError(f"job {job_id} not finished after {timeout} s")


def run_service(svc: Service, spec: dict, dataset_id: str) -> dict[str, float]:
    cpu_before = process_cpu(svc.worker.proc.pid)
    submitted = time.time()
    job_id = svc.client.submit(spec, dataset_id, name="e2e").id
    accepted = time.time()
    job, seen = wait_final(svc.factory, job_id, 0.01)
    cpu = process_cpu(svc.worker.proc.pid) - cpu_before
    if job.status != "succeeded":
        raise SystemExit(f"job {job_id} {job.status}: {job.error}\n"
                         f"{svc.worker.log_path.read_text()[-2000:]}")
    started, finished = aware(job.started_at), aware(job.finished_at)
    return {"job": (finished - started).total_seconds(),
            "fit": job.summary["training_seconds"],
            "total": seen - accepted, "submit": accepted - submitted, "cpu": cpu}


def run_engine(spec: dict, X: np.ndarray, y: np.ndarray, n_classes: int | None
               ) -> tuple[float, float]:
    """Build the trainer and fit, as the worker does after loading; no callback.
    Returns wall and CPU seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    mlp.Trainer(spec, X, y, n_classes=n_classes).fit()
    return time.perf_counter() - start, time.process_time() - cpu


def dataset_for(svc: Service, workload: str, tmp: Path) -> tuple[str, np.ndarray, np.ndarray, int]:
    """Create the workload's dataset through the API; returns its id and the same arrays."""
    if workload == "xor":
        X, y, _ = mlp.datasets.make("xor")
        ds = svc.client.create_builtin_dataset("xor")
    else:
        X, y = medium_data()
        path = tmp / "medium.npz"
        np.savez(path, X=X, y=y)
        ds = svc.client.upload_dataset(path, task="classification")
    return ds.id, X, y, int(ds.n_outputs)


def measure(svc: Service, workload: str, spec: dict, repeats: int, tmp: Path) -> dict:
    dataset_id, X, y, n_classes = dataset_for(svc, workload, tmp)
    run_service(svc, {**spec, "training": {**spec["training"], "epochs": 5}}, dataset_id)  # warm
    runs: dict[str, list[float]] = {"engine": [], "engine_cpu": []}
    for _ in range(repeats):
        wall, cpu = run_engine(spec, X, y, n_classes)
        runs["engine"].append(wall)
        runs["engine_cpu"].append(cpu)
        for key, value in run_service(svc, spec, dataset_id).items():
            runs.setdefault(key, []).append(value)
    return {key: min(values) for key, values in runs.items()}


def print_table(rows: list[tuple[str, str, dict]], targets: dict[str, float]) -> None:
    print(f"{'stack':<15} {'workload':<9} {'engine s':>9} {'fit s':>8} {'job s':>8} "
          f"{'total s':>8} {'job/eng':>8} {'total/eng':>10} {'eng cpu':>8} {'wrk cpu':>8} "
          f"{'cpu/eng':>8} {'target':>7}  met (job/eng)")
    for kind, workload, best in rows:
        ratio = best["job"] / best["engine"]
        target = targets[workload]
        print(f"{kind:<15} {workload:<9} {best['engine']:>9.3f} {best['fit']:>8.3f} "
              f"{best['job']:>8.3f} {best['total']:>8.3f} {ratio:>7.2f}x "
              f"{best['total'] / best['engine']:>9.2f}x {best['engine_cpu']:>8.3f} "
              f"{best['cpu']:>8.3f} {best['cpu'] / best['engine_cpu']:>7.2f}x {target:>6.2f}x  "
              f"{'yes' if ratio <= target else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--stacks", default="postgres+redis,embedded")
    parser.add_argument("--workloads", default="medium,xor")
    parser.add_argument("--medium-epochs", type=int)
    parser.add_argument("--xor-epochs", type=int, default=2000)
    parser.add_argument("--checkpoint-interval", type=float, default=5.0,
                        help="seconds between checkpoints (default 5, so a run takes several)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    repeats = args.repeats or (2 if args.quick else 3)
    specs = {"medium": medium_spec(args.medium_epochs or (30 if args.quick else 100)),
             "xor": xor_spec(args.xor_epochs)}
    rows = []
    for kind in args.stacks.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            with service_stack(kind, Path(tmp),
                               checkpoint_interval_s=args.checkpoint_interval) as svc:
                for workload in args.workloads.split(","):
                    rows.append((kind, workload, measure(svc, workload, specs[workload],
                                                         repeats, Path(tmp))))
    print(f"best of {repeats}; BLAS threads {os.environ['OPENBLAS_NUM_THREADS']} (engine and "
          f"worker); medium {specs['medium']['training']['epochs']} epochs, xor "
          f"{specs['xor']['training']['epochs']} epochs, every epoch recorded; checkpoint "
          f"every {args.checkpoint_interval:g} s; load average {open('/proc/loadavg').read().strip()}")
    print_table(rows, {"medium": 1.10, "xor": 1.5})


if __name__ == "__main__":
    main()
