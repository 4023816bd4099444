"""How many running jobs' metric writes one PostgreSQL absorbs (issue 8, target 6: what
saturates first, and the numbers that say when).

Each simulated job is a thread that does what a worker's metric flush does, on the real
schema: one transaction of `jobs.metric_writer.write_rows` (the fenced UPDATE of its job
row, then one INSERT of its epoch rows in a savepoint), every
`--interval` seconds (the worker's `metrics_flush_seconds`), `--rows` epochs of
`--layers` layers at a time. Jobs run in writer processes of up to 5 threads each
(started as subprocesses of this script, with plain command-line arguments; each opens
its connections and says it is ready before the run starts), their flushes spread over
the interval. For each number of jobs the table gives the flushes offered and committed
within the run per second, the flush latency (p50, p99: from the transaction's start to
its commit), the flushes that failed, and the CPU the server and the writers used over
the run (from /proc; the server must run on this machine, used by nothing else). A flush that takes longer than the interval holds the next
one back, as the worker's one-flush-at-a-time buffer does, so a saturated database
shows as flushes done falling behind those offered.

    .venv/bin/python bench/metric_capacity.py                       # 1-64 jobs, 3 profiles
    .venv/bin/python bench/metric_capacity.py --jobs 1,8 --seconds 5 --profiles medium
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import zlib
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from proc_cpu import postgres_cpu  # noqa: E402
from jobs.db import make_engine, make_sessionmaker, session_scope  # noqa: E402
from jobs.layer_values import WIDTH  # noqa: E402
from jobs.lease import Lease, claim  # noqa: E402
from jobs.metric_writer import EPOCH_FIELDS, RowArrays, write_rows  # noqa: E402
from jobs.models import Job, User  # noqa: E402

# The pool's size (jobs.db.make_engine): each job keeps its connection, as a worker's does.
THREADS_PER_WRITER = 5
# (rows per flush, seconds between flushes, layers): what one running job sends.
PROFILES = {
    # A network whose epochs take ~0.1 s (medium-sized data), every epoch recorded.
    "medium": (5, 0.5, 3),
    # A deep one on small data: an epoch every 10 ms, 10 layers.
    "deep": (50, 0.5, 10),
    # A tiny one (XOR): epochs in ~0.1 ms, flushed by count (metrics_flush_rows) as fast
    # as the last flush commits.
    "tiny": (5000, 0.0, 3),
}


def batch(first_epoch: int, rows: int, layers: int, rng) -> RowArrays:
    return RowArrays(np.arange(first_epoch, first_epoch + rows, dtype=np.int64),
                     rng.random((rows, len(EPOCH_FIELDS))), rng.random((rows, layers, WIDTH)))


def run_job_writes(factory, lease: Lease, args, out: dict) -> None:
    """One job's flushes from `out["start"]` for `args.seconds`; appends each committed
    flush's (commit time, latency) to `out["flushes"]`, and counts failures."""
    rng = np.random.default_rng(zlib.crc32(lease.job_id.encode()))
    out["ready"].wait()
    due = out["start"] + rng.random() * args.interval  # spread over the interval
    epoch, end = 1, out["start"] + args.seconds
    while True:
        now = time.time()
        if due > now:
            time.sleep(due - now)
        if time.time() >= end:
            return
        arrays = batch(epoch, args.rows, args.layers, rng)
        started = time.perf_counter()
        try:
            with session_scope(factory) as session:
                write_rows(session, lease, arrays, epoch + args.rows - 1)
        except Exception as exc:  # noqa: BLE001 - counted and reported, not fatal
            out["errors"].append(f"{exc.__class__.__name__}: {exc}"[:200])
        else:
            out["flushes"].append((time.time(), time.perf_counter() - started))
        epoch += args.rows
        due = max(due + args.interval, time.time())  # a late flush delays the next


def writer(args) -> None:
    """Subprocess entry: open a connection per job, print "ready", read the start time from
    stdin, write for the jobs given as id:lease_epoch, print the results as JSON."""
    engine = make_engine(args.url)
    factory = make_sessionmaker(engine)
    warm = [engine.connect() for _ in args.leases]  # the pool's connections, opened now
    for conn in warm:
        conn.close()
    out = {"ready": threading.Event(), "flushes": [], "errors": []}
    threads = []
    for item in args.leases:
        job_id, epoch = item.rsplit(":", 1)
        thread = threading.Thread(target=run_job_writes, args=(
            factory, Lease(job_id, int(epoch), "bench"), args, out))
        thread.start()
        threads.append(thread)
    print("ready", flush=True)
    out["start"] = float(sys.stdin.readline())
    out["ready"].set()
    time.sleep(max(0.0, out["start"] - time.time()))
    cpu = time.process_time()
    for thread in threads:
        thread.join()
    cpu, elapsed = time.process_time() - cpu, time.time() - out["start"]
    engine.dispose()
    end = out["start"] + args.seconds
    print(json.dumps({"latencies": [lat for t, lat in out["flushes"] if t <= end],
                      "late": sum(t > end for t, _ in out["flushes"]),
                      "errors": out["errors"], "cores": cpu / elapsed}))


def claimed_jobs(factory, n: int) -> list[Lease]:
    with session_scope(factory) as session:
        user = User(name=f"capacity-{time.time_ns()}")
        session.add(user)
        session.flush()
        jobs = [Job(owner_id=user.id, spec={}, epochs=10**6, status="queued") for _ in range(n)]
        session.add_all(jobs)
        session.flush()
        ids = [job.id for job in jobs]
    leases = []
    for job_id in ids:
        with session_scope(factory) as session:
            leases.append(claim(session, job_id, "bench", ttl_s=3600, max_attempts=1))
    return leases


def measure(url: str, factory, n: int, profile: str, seconds: float) -> dict:
    rows, interval, layers = PROFILES[profile]
    leases = claimed_jobs(factory, n)
    procs = []
    try:
        for i in range(0, n, THREADS_PER_WRITER):
            group = [f"{lease.job_id}:{lease.epoch}" for lease in leases[i:i + THREADS_PER_WRITER]]
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--writer", url, "--seconds", str(seconds),
                 "--rows", str(rows), "--interval", str(interval), "--layers", str(layers),
                 "--leases", *group], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for proc in procs:
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("a writer process failed to start")
        start_at = time.time() + 0.2
        for proc in procs:
            proc.stdin.write(f"{start_at!r}\n")
            proc.stdin.flush()
        time.sleep(max(0.0, start_at - time.time()))
        server = postgres_cpu()
        time.sleep(seconds)
        server = postgres_cpu() - server
        results = [json.loads(proc.communicate()[0]) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    latencies = sorted(x for r in results for x in r["latencies"])
    errors = [e for r in results for e in r["errors"]]
    if errors:
        print(f"{len(errors)} flushes failed, e.g. {errors[0]}", file=sys.stderr)
    return {"profile": profile, "jobs": n, "offered": n / interval if interval else float("nan"),
            "done": len(latencies) / seconds, "rows": len(latencies) * rows / seconds,
            "p50": 1e3 * statistics.median(latencies) if latencies else math.nan,
            "p99": 1e3 * latencies[math.ceil(0.99 * len(latencies)) - 1] if latencies else math.nan,
            "errors": len(errors), "server": server / seconds,
            "writers": sum(r["cores"] for r in results),
            "server_ms_per_flush": 1e3 * server / max(len(latencies), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1,4,16,64")
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writer")  # internal: a writer subprocess's database URL
    parser.add_argument("--rows", type=int)
    parser.add_argument("--interval", type=float)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--leases", nargs="*")
    args = parser.parse_args()
    if args.writer:
        args.url = args.writer
        return writer(args)
    from tests.integration.services import fresh_postgres_database, migrate  # pytest: not in writers
    with ExitStack() as stack:
        url = stack.enter_context(fresh_postgres_database())
        migrate(url)
        engine = make_engine(url)
        stack.callback(engine.dispose)
        factory = make_sessionmaker(engine)
        print(f"PostgreSQL on this machine ({os.cpu_count()} vCPUs), {args.seconds:g} s per row; "
              f"load average {os.getloadavg()[0]:.2f}")
        print("| profile (rows x layers per flush, interval) | jobs | flushes/s offered | done "
              "| epoch rows/s | p50 ms | p99 ms | failed | server CPU (cores) | writers' CPU | server ms per flush |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for profile in args.profiles.split(","):
            rows, interval, layers = PROFILES[profile]
            for n in map(int, args.jobs.split(",")):
                r = measure(url, factory, n, profile, args.seconds)
                offered = "as fast as committed" if not interval else f"{r['offered']:.0f}"
                print(f"| {profile} ({rows} x {layers}, {interval:g} s) | {n} | {offered} | "
                      f"{r['done']:.1f} | {r['rows']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} | "
                      f"{r['server']:.2f} | {r['writers']:.2f} | {r['server_ms_per_flush']:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
