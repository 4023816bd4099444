"""Jobs per minute with 1, 2 and 4 worker processes (issue 8, target 6).

A batch of small training jobs is submitted at once through the API (real HTTP) to
PostgreSQL + Redis, drained by N real `celery worker` processes (concurrency 1 each, as
docker-compose.yml runs them), and timed from the first 202 to the last job's
`finished_at`. The peer is the same batch on one worker, measured in the same run, so
the speed-up and the per-core efficiency are ratios. Every job must succeed.

    .venv/bin/python bench/scale_out.py                 # 24 jobs per batch, 1/2/4 workers
    .venv/bin/python bench/scale_out.py --quick         # 8 jobs per batch
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import func, select

# The stack (fresh database, worker processes, HTTP server) is the integration tests' own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradtrace.client import Client
from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.models import Job
from jobs.settings import Settings
from service import create_app
from tests.factories import make_token  # noqa: E402
from tests.integration.services import (HttpServer, WorkerProcess, fresh_postgres_database,
                                        migrate, redis_url, unique_queue, worker_env)

SPEC = {"network": {"layers": [{"units": 16, "activation": "tanh"},
                               {"units": 16, "activation": "tanh"},
                               {"units": 1, "activation": "sigmoid"}]},
        "loss": "binary_cross_entropy",
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "training": {"batch_size": 32, "seed": 0},
        "record": {"every_epochs": 1}}


def drain(gt: Client, factory, dataset_id: str, n_jobs: int, epochs: int) -> float:
    """Submit `n_jobs` at once; seconds from the first 202 to the last `finished_at`."""
    spec = {**SPEC, "training": {**SPEC["training"], "epochs": epochs}}
    start_wall = time.time()
    ids = [gt.submit(spec, dataset_id, name=f"scale-{i}").id for i in range(n_jobs)]
    while True:
        with session_scope(factory) as session:
            rows = session.execute(select(Job.status, func.count()).where(Job.id.in_(ids))
                                   .group_by(Job.status)).all()
            counts = dict(rows)
            if counts.get("succeeded", 0) == n_jobs:
                last = session.scalar(select(func.max(Job.finished_at)).where(Job.id.in_(ids)))
                return last.timestamp() - start_wall
        if counts.get("failed") or counts.get("cancelled"):
            raise SystemExit(f"a job did not succeed: {counts}")
        time.sleep(0.05)


def measure(stack: ExitStack, tmp: Path, worker_counts: list[int], n_jobs: int,
            epochs: int) -> dict[int, float]:
    settings = Settings.from_env(
        state_dir=tmp / "state", database_url=stack.enter_context(fresh_postgres_database()),
        broker_url=redis_url(12), storage_dir=tmp / "storage", token_pepper="bench-pepper",
        queue=unique_queue(), max_active_jobs_per_user=n_jobs + 2)  # one batch at a time
    settings.ensure_dirs()
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    stack.callback(engine.dispose)
    factory = make_sessionmaker(engine)
    server = HttpServer(create_app(settings))
    stack.callback(server.stop)
    gt = Client(server.url, token=make_token(factory, settings.token_pepper, "bench"))
    dataset_id = gt.create_builtin_dataset("moons", n_samples=400).id
    seconds = {}
    for n in worker_counts:
        workers = [WorkerProcess(worker_env(settings), f"w{n}-{i}", tmp) for i in range(n)]
        try:
            for w in workers:
                w.wait_ready()
            drain(gt, factory, dataset_id, 2, epochs)           # warm every process
            seconds[n] = drain(gt, factory, dataset_id, n_jobs, epochs)
        finally:
            for w in workers:
                w.stop()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    n_jobs = args.jobs or (8 if args.quick else 24)
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        seconds = measure(stack, Path(tmp), counts, n_jobs, args.epochs)
    cores = os.cpu_count() or 1
    base = n_jobs / seconds[counts[0]] * 60
    print(f"{n_jobs} jobs per batch, moons 400 x 2, 2-16-16-1, {args.epochs} epochs recorded "
          f"every epoch; {cores} cores; load average {os.getloadavg()[0]:.2f}")
    print(f"{'workers':>7} {'seconds':>8} {'jobs/min':>9} {'speed-up':>9} {'per-core eff.':>14}")
    for n in counts:
        rate = n_jobs / seconds[n] * 60
        speedup = rate / base
        print(f"{n:>7} {seconds[n]:>8.2f} {rate:>9.1f} {speedup:>8.2f}x "
              f"{speedup / min(n, cores) * counts[0]:>13.0%}")


if __name__ == "__main__":
    main()
