"""Benchmark the live event stream against its peers, in one run on one machine.

1. Throughput: reading every recorded epoch of a finished job through
   GET /v1/jobs/{id}/events (with the Python client's typed events) against the same
   epochs through GET /v1/jobs/{id}/metrics as JSON columns (one response, no per-epoch
   framing) and as CSV. Prints epochs/s and the stream's ratio to each peer.
2. Latency: a writer thread commits one epoch every `--write-every` seconds, as the
   worker's MetricBuffer does; the client measures commit-to-delivery delay, printed as
   a ratio to the server's poll interval (events_poll_s), which bounds it by design.

The API runs over real HTTP (werkzeug, threaded) on a temporary SQLite database. Usage::

    .venv/bin/python bench/event_stream.py            # 20,000 epochs, 3 layers
    .venv/bin/python bench/event_stream.py --quick
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from werkzeug.serving import make_server

from gradtrace.client import Client, EpochEvent
from jobs.auth import get_or_create_user, issue_token
from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.metric_writer import EpochMetric, insert_ignoring_duplicates
from jobs.models import Base, Job
from jobs.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not installed
from tests.factories import epoch_rows  # noqa: E402

SPEC = {"network": {"layers": [{"units": 32, "activation": "tanh"},
                               {"units": 32, "activation": "tanh"},
                               {"units": 1, "activation": "sigmoid"}]}}


def record(epoch: int) -> dict:
    layers = [{"layer": i, "weight_grad_norm": 0.1 / epoch, "bias_grad_norm": 0.01,
               "delta_norm": 0.2, "weight_norm": 1.0, "update_ratio": 1e-3,
               "dead_fraction": None, "saturated_fraction": 0.1} for i in (1, 2, 3)]
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": None,
            "train_accuracy": 0.5, "val_accuracy": None, "learning_rate": 0.1,
            "seconds": 0.001, "layers": layers}


def write_epochs(factory, job_id: str, epochs: range) -> None:
    with session_scope(factory) as session:
        insert_ignoring_duplicates(session, EpochMetric,
                                   [epoch_rows(job_id, record(e)) for e in epochs])
        session.get(Job, job_id).epoch = epochs[-1]


def new_job(factory, owner_id: str, epochs: int, status: str) -> str:
    with session_scope(factory) as session:
        job = Job(owner_id=owner_id, name="bench", spec=SPEC, epochs=epochs, status=status)
        session.add(job)
        session.flush()
        return job.id


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def throughput(gt: Client, job_id: str, n: int, repeats: int) -> None:
    def stream():
        got = sum(isinstance(e, EpochEvent) for e in gt.stream(job_id))
        assert got == n, got
    results = {"events stream": best_of(repeats, stream),
               "metrics JSON": best_of(repeats, lambda: gt.metrics(job_id)),
               "metrics CSV": best_of(repeats, lambda: gt.metrics_csv(job_id))}
    print(f"\nthroughput: {n} epochs x 3 layers, best of {repeats}")
    for name, seconds in results.items():
        print(f"  {name:14s} {seconds:7.3f} s  {n / seconds:10.0f} epochs/s")
    stream_s = results["events stream"]
    for peer in ("metrics JSON", "metrics CSV"):
        print(f"  stream / {peer}: {stream_s / results[peer]:.2f}x the time")


def latency(gt: Client, factory, owner_id: str, settings: Settings, count: int,
            every: float) -> None:
    job_id = new_job(factory, owner_id, count, "running")
    committed: dict[int, float] = {}

    def writer():
        for epoch in range(1, count + 1):
            time.sleep(every)
            write_epochs(factory, job_id, range(epoch, epoch + 1))
            committed[epoch] = time.perf_counter()
        with session_scope(factory) as session:
            session.get(Job, job_id).status = "succeeded"

    thread = threading.Thread(target=writer)
    thread.start()
    delays = [time.perf_counter() - committed[e.epoch] for e in gt.stream(job_id)
              if isinstance(e, EpochEvent)]
    thread.join()
    delays.sort()
    poll = settings.events_poll_s
    p95 = delays[int(0.95 * (len(delays) - 1))]
    print(f"\nlatency: {count} epochs committed every {every} s, events_poll_s={poll}")
    print(f"  median {statistics.median(delays) * 1000:6.1f} ms "
          f"({statistics.median(delays) / poll:.2f}x poll)   p95 {p95 * 1000:6.1f} ms "
          f"({p95 / poll:.2f}x poll)   max {delays[-1] * 1000:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, repeats, count = (2000, 2, 20) if args.quick else (20000, 3, 60)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(state_dir=Path(tmp), broker_url="memory://")
        settings.ensure_dirs()
        engine = make_engine(settings.database_url)
        Base.metadata.create_all(engine)
        factory = make_sessionmaker(engine)
        with session_scope(factory) as session:
            user = get_or_create_user(session, "bench")
            owner_id, (_, token) = user.id, issue_token(session, user, settings.token_pepper)
        finished = new_job(factory, owner_id, n, "succeeded")
        write_epochs(factory, finished, range(1, n + 1))
        from service import create_app

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with Client(f"http://127.0.0.1:{server.server_port}", token) as gt:
                throughput(gt, finished, n, repeats)
                latency(gt, factory, owner_id, settings, count, every=0.05)
        finally:
            server.shutdown()
            engine.dispose()


if __name__ == "__main__":
    main()
