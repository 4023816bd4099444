"""Queue latency: from the 202 of `POST /v1/jobs` to `status=running` (issue 8, target 2).

Jobs are submitted one at a time over real HTTP (the Flask app under werkzeug, threaded,
in this process) to an idle real `celery -A worker.entry worker` process (concurrency 1),
on PostgreSQL + Redis and on the embedded default (SQLite + kombu's SQL transport). Each
job is a short XOR run; the next one is submitted after the previous one has finished
and a random pause of 0-`--pause` s, so submissions fall anywhere in the idle worker's
broker polling cycle.

Latency = the job row's `started_at` - the wall time this process got the 202.
`started_at` is written by the worker's claim from the database clock (PostgreSQL
`now()`, microseconds; SQLite `strftime('%f')`, milliseconds), which on this one machine
is the same kernel clock as `time.time()`; the claim commits `status=running` in the same
transaction, a fraction of a millisecond later. No poll runs while a job is queued, so
the measurement does not steal the worker's CPU. It can be slightly negative: the API
publishes before it answers, and a fast worker may claim before the 202 arrives.
`--poll` measures instead when a 1 ms poll of the job's status (its own connection)
first sees it no longer queued: the commit as a client sees it, plus up to 1 ms.

    .venv/bin/python bench/queue_latency.py              # 100 jobs per stack
    .venv/bin/python bench/queue_latency.py --quick      # 20 jobs per stack
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.e2e_overhead import job_row, service_stack, wait_final, xor_spec  # noqa: E402
from sqlalchemy import text  # noqa: E402

from jobs.clock import aware  # noqa: E402

TARGETS = {"postgres+redis": (0.050, 0.200), "embedded": (0.500, 0.500)}  # p50, p99 (s)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def seen_running(engine, job_id: str, accepted: float) -> float:
    """Seconds from `accepted` until a 1 ms poll sees the job leave `queued`."""
    with engine.connect() as conn:
        while True:
            status = conn.execute(text("SELECT status FROM jobs WHERE id = :id"),
                                  {"id": job_id}).scalar_one()
            conn.rollback()  # a fresh snapshot for the next read
            if status != "queued":
                return time.time() - accepted
            time.sleep(0.001)


def latencies(svc, n_jobs: int, pause_s: float, epochs: int, poll: bool) -> list[float]:
    dataset_id = svc.client.create_builtin_dataset("xor").id
    spec = xor_spec(epochs)
    wait_final(svc.factory, svc.client.submit(spec, dataset_id, name="warm").id, 0.02)
    rng = random.Random(0)
    out = []
    for i in range(n_jobs):
        time.sleep(rng.uniform(0, pause_s))
        job_id = svc.client.submit(spec, dataset_id, name=f"lat-{i}").id
        accepted = time.time()
        if poll:
            out.append(seen_running(svc.factory.kw["bind"], job_id, accepted))
        job, _ = wait_final(svc.factory, job_id, 0.02)
        if job.status != "succeeded":
            raise SystemExit(f"job {job_id} {job.status}: {job.error}")
        if not poll:
            out.append(aware(job_row(svc.factory, job_id).started_at).timestamp() - accepted)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--stacks", default="postgres+redis,embedded")
    parser.add_argument("--pause", type=float, default=0.3,
                        help="longest random pause between a job's end and the next submit")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--poll", action="store_true",
                        help="time the first 1 ms poll that sees the job running instead")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    n_jobs = args.jobs or (20 if args.quick else 100)
    results = {}
    for kind in args.stacks.split(","):
        with tempfile.TemporaryDirectory() as tmp, service_stack(kind, Path(tmp)) as svc:
            results[kind] = latencies(svc, n_jobs, args.pause, args.epochs, args.poll)
    print(f"{n_jobs} jobs per stack, one at a time to an idle worker; 202 -> "
          f"{'first 1 ms poll seeing running' if args.poll else 'started_at'}; "
          f"{os.cpu_count()} cores; load average {open('/proc/loadavg').read().strip()}")
    print(f"{'stack':<15} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'min ms':>7}"
          f"  target p50/p99 ms   met")
    for kind, values in results.items():
        p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
        t50, t99 = TARGETS[kind]
        met = p50 < t50 and p99 < t99
        print(f"{kind:<15} {p50 * 1e3:>7.1f} {p95 * 1e3:>7.1f} {p99 * 1e3:>7.1f} "
              f"{max(values) * 1e3:>7.1f} {min(values) * 1e3:>7.1f}  "
              f"{t50 * 1e3:>5.0f} / {t99 * 1e3:<5.0f}       {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
