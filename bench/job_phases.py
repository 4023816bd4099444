"""Where a worker's time per job goes: `run_job` in this process, each part timed, against
the engine alone (issue 8, target 1).

The same spec, data and seed are trained (a) by `mlp.Trainer.fit` alone and (b) by the
worker's own `run_job` on a real database, alternating, with a timer around each part of
(b): the claim, loading (`_prepare`), training (`fit`, including the per-epoch callback),
the metric flushes (wall time in their thread, and that thread's CPU time), the
finishing transaction (`_succeed`) and the archive after it. On PostgreSQL it also
reads the server's CPU time per job from /proc (every `postgres` process; the server
must run on this machine, used by nothing else). The job window is the claim's start to
`_succeed`'s end, which is what `started_at` -> `finished_at` in bench/e2e_overhead.py
measures less the queue; the CPU columns cover the whole `run_job`, the archive after
the window included. Medians over the jobs; the engine alone varies by tens of percent between runs on
a 2-vCPU machine, so read the window against the engine run next to it.

    .venv/bin/python bench/job_phases.py                    # PostgreSQL, XOR, 8 jobs
    .venv/bin/python bench/job_phases.py --database sqlite --jobs 12
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_overhead import xor_spec  # noqa: E402  (sets the worker's BLAS threads first)
from proc_cpu import postgres_cpu  # noqa: E402

import mlp  # noqa: E402
from jobs import metric_writer, training  # noqa: E402
from jobs.auth import get_or_create_user  # noqa: E402
from jobs.datasets import create_dataset, parse_builtin  # noqa: E402
from jobs.db import make_engine, make_sessionmaker, session_scope  # noqa: E402
from jobs.settings import Settings  # noqa: E402
from jobs.storage import BlobStore  # noqa: E402
from jobs.submission import create_job  # noqa: E402
from tests.integration.services import fresh_postgres_database, migrate  # noqa: E402

TIMED = {"claim": (training, "claim"), "prepare": (training, "_prepare"),
         "fit": (mlp.Trainer, "fit"), "succeed": (training, "_succeed"),
         "archive": (training, "archive_finished")}


class Timers:
    """Wall seconds per part of the current job, added up over its calls."""

    def __init__(self):
        self.parts: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.parts[name] += seconds

    def wrap(self, name: str, fn, *, thread_cpu: bool = False):
        def timed(*args, **kwargs):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - start)
                if thread_cpu:
                    self.add(name + " cpu", time.thread_time() - cpu)
        return timed


def instrument(stack: ExitStack, timers: Timers) -> None:
    """Put a timer around each part of run_job; undone when `stack` closes."""
    for name, (owner, attr) in TIMED.items():
        original = getattr(owner, attr)
        setattr(owner, attr, timers.wrap(name, original))
        stack.callback(setattr, owner, attr, original)
    write = metric_writer.MetricBuffer._write
    metric_writer.MetricBuffer._write = timers.wrap("flushes", write, thread_cpu=True)
    stack.callback(setattr, metric_writer.MetricBuffer, "_write", write)


def setup(stack: ExitStack, database: str, tmp: Path) -> tuple[Settings, object, str, str]:
    url = (stack.enter_context(fresh_postgres_database()) if database == "postgresql"
           else f"sqlite:///{tmp / 'gradtrace.db'}")
    migrate(url)
    settings = Settings.from_env(state_dir=tmp / "state", database_url=url,
                                 storage_dir=tmp / "storage", token_pepper="bench")
    settings.ensure_dirs()
    engine = make_engine(url)
    stack.callback(engine.dispose)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        owner = get_or_create_user(session, "bench").id
        dataset = create_dataset(session, BlobStore(settings.storage_dir), owner_id=owner,
                                 name="xor", parsed=parse_builtin("xor"), source="builtin",
                                 max_storage_bytes=10**9).id
    return settings, factory, owner, dataset


def one_job(settings, factory, owner, dataset, spec, timers: Timers, on_pg: bool) -> dict:
    with session_scope(factory) as session:
        job_id = create_job(session, settings, owner_id=owner, dataset_id=dataset,
                            name="phases", raw_spec=spec)[0].id
    timers.parts.clear()
    server = postgres_cpu() if on_pg else 0.0
    start, cpu = time.perf_counter(), time.process_time()
    outcome = training.run_job(factory, settings, job_id, worker_id="bench")
    total = time.perf_counter() - start
    if outcome != "succeeded":
        raise SystemExit(f"job {job_id}: {outcome}")
    parts = dict(timers.parts)
    parts["window"] = total - parts["archive"]
    parts["worker cpu"] = time.process_time() - cpu
    if on_pg:
        parts["server cpu"] = postgres_cpu() - server
    return parts


def engine_alone(spec: dict) -> float:
    X, y, _ = mlp.datasets.make("xor")
    start = time.perf_counter()
    mlp.Trainer(spec, X, y, n_classes=2).fit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2000)
    args = parser.parse_args()
    spec, timers, rows, engine = xor_spec(args.epochs), Timers(), [], []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        settings, factory, owner, dataset = setup(stack, args.database, Path(tmp))
        instrument(stack, timers)
        one_job(settings, factory, owner, dataset, spec, timers, False)  # warm-up
        for _ in range(args.jobs):
            engine.append(engine_alone(spec))
            rows.append(one_job(settings, factory, owner, dataset, spec, timers,
                                args.database == "postgresql"))
    print(f"{args.database}, XOR {args.epochs} epochs, {args.jobs} jobs; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'part':<16}{'median ms':>10}{'min ms':>10}{'max ms':>10}")
    parts = list(dict.fromkeys(k for r in rows for k in r if k != "window"))  # first seen first
    for name in ["engine alone"] + parts + ["window"]:
        values = engine if name == "engine alone" else [r.get(name, 0.0) for r in rows]
        print(f"{name:<16}{1e3 * statistics.median(values):>10.1f}"
              f"{1e3 * min(values):>10.1f}{1e3 * max(values):>10.1f}")
    ratios = [r["window"] / e for r, e in zip(rows, engine)]
    print(f"window / engine alone: median {statistics.median(ratios):.2f}x "
          f"(per job: {', '.join(f'{r:.2f}' for r in ratios)}); "
          f"median window / median engine {statistics.median(r['window'] for r in rows) / statistics.median(engine):.2f}x")


if __name__ == "__main__":
    main()
