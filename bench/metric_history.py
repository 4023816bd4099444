"""Benchmark reading a big metric history: 100,000 recorded epochs x 10 layers.

Times GET /v1/jobs/{id}/metrics through the Flask app (full response, and
max_points=1000) for a finished job served from its metric archive, against peers
measured in the same run, repetitions interleaved: the same reads from the job's rows
(the path a running job and every job before archives took: `read_rows`, encoded the
same way), the bare SQL fetch of the rows, and the issue's 300 ms target.
The database is a temporary SQLite file (the embedded default); the HTTP layer is
Flask's test client, so sockets are not counted.

    .venv/bin/python bench/metric_history.py            # 100,000 epochs x 10 layers
    .venv/bin/python bench/metric_history.py --quick    # 10,000 epochs, 2 repeats
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from jobs.auth import get_or_create_user, issue_token
from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.metric_archive import ensure_archive, metrics_json
from jobs.metric_reader import read_rows
from jobs.metric_writer import EpochMetric, insert_ignoring_duplicates
from jobs.models import Base, Job
from jobs.settings import Settings
from service.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not installed
from tests.factories import epoch_rows  # noqa: E402

TARGET_S = 0.300
LAYERS = 10
SPEC = {"network": {"layers": [{"units": 16, "activation": "tanh"}] * (LAYERS - 1)
                    + [{"units": 1, "activation": "sigmoid"}]}}


def fill(factory, owner_id: str, epochs: int) -> str:
    """One finished job with `epochs` epochs; loss has a spike in every 97th epoch."""
    with session_scope(factory) as session:
        job = Job(owner_id=owner_id, name="bench", spec=SPEC, epochs=epochs,
                  status="succeeded", epoch=epochs)
        session.add(job)
        session.flush()
        job_id = job.id
    for start in range(1, epochs + 1, 10_000):
        block = range(start, min(start + 10_000, epochs + 1))
        with session_scope(factory) as session:
            insert_ignoring_duplicates(session, EpochMetric, [epoch_rows(job_id, {
                "epoch": e, "train_loss": (5.0 if e % 97 == 0 else 1.0 / e),
                "val_loss": 1.1 / e, "train_accuracy": 0.9, "val_accuracy": 0.8,
                "learning_rate": 0.1, "seconds": 0.001,
                "layers": [{"layer": k, "weight_grad_norm": 0.1 / e, "bias_grad_norm": 0.01,
                            "delta_norm": 0.2, "weight_norm": 1.0, "update_ratio": 1e-3,
                            "dead_fraction": 0.0, "saturated_fraction": 0.1}
                           for k in range(1, LAYERS + 1)]}) for e in block])
    return job_id


def interleaved(repeats: int, cases: dict) -> dict[str, float]:
    """Best time of each case, running one repetition of every case per round."""
    best = {name: float("inf") for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10,000 epochs, 2 repeats")
    args = parser.parse_args()
    epochs, repeats = (10_000, 2) if args.quick else (args.epochs, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(database_url=url, storage_dir=str(Path(tmp) / "storage"))
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        factory = make_sessionmaker(engine)
        with session_scope(factory) as session:
            owner = get_or_create_user(session, "bench")
            _, token = issue_token(session, owner, settings.token_pepper)
            owner_id = owner.id
        start = time.perf_counter()
        job_id = fill(factory, owner_id, epochs)
        print(f"filled {epochs} epochs x {LAYERS} layers in {time.perf_counter() - start:.1f} s")
        client = create_app(settings).test_client()
        headers = {"Authorization": f"Bearer {token}"}

        def get(query: str) -> bytes:
            response = client.get(f"/v1/jobs/{job_id}/metrics{query}", headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)[:300]
            return response.get_data()

        def from_rows(max_points: int | None) -> bytes:
            # The rows path, as the route takes it for a job without an archive.
            with session_scope(factory) as session:
                job = session.get(Job, job_id)
                metrics = read_rows(session, job, 0, max_points)
                return metrics_json(metrics, job_id=job.id, status=job.status)

        def raw_sql() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT * FROM epoch_metrics WHERE job_id = :j ORDER BY epoch"),
                             {"j": job_id}).all()

        rows_full, rows_small = from_rows(None), from_rows(1000)  # before any archive
        start = time.perf_counter()
        with session_scope(factory) as session:  # what the worker does once at finish
            ensure_archive(session, session.get(Job, job_id))
        archive_s = time.perf_counter() - start
        with engine.connect() as conn:
            sizes = conn.execute(text("SELECT kind, length(data) FROM artifacts "
                                      "WHERE job_id = :j"), {"j": job_id}).all()
        # Same JSON both ways: the archive changes the speed, not the answer.
        assert json.loads(get("")) == json.loads(rows_full)
        assert json.loads(get("?max_points=1000")) == json.loads(rows_small)
        results = interleaved(repeats, {
            "bare SQL fetch of the rows": raw_sql,
            "rows: full": lambda: from_rows(None),
            "rows: max_points=1000": lambda: from_rows(1000),
            "GET metrics (full)": lambda: get(""),
            "GET metrics max_points=1000": lambda: get("?max_points=1000"),
            # Not the precomputed body: cut from the numpy columns and encoded per request.
            "GET metrics since_epoch=1": lambda: get("?since_epoch=1"),
        })
        engine.dispose()
    stored = ", ".join(f"{kind} {length / 1e6:.1f} MB" for kind, length in sizes)
    print(f"archive written once in {archive_s * 1000:.0f} ms ({stored}); "
          f"full response {len(rows_full) / 1e6:.1f} MB")
    print(f"best of {repeats} (interleaved), SQLite, Flask test client, "
          f"load average {os.getloadavg()[0]:.2f}")
    sql_s = results["bare SQL fetch of the rows"]
    for name, seconds in results.items():
        print(f"  {name:30s} {seconds * 1000:8.1f} ms  {seconds / sql_s:5.2f}x SQL  "
              f"{seconds / TARGET_S:5.2f}x the 300 ms target")


if __name__ == "__main__":
    main()
