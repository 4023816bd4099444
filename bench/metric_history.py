"""Benchmark reading a big metric history: 100,000 recorded epochs x 10 layers.

Times GET /v1/jobs/{id}/metrics through the Flask app (full response, and
max_points=1000) against its peers measured in the same run: the bare SQL fetch of the
same rows, and the issue's 300 ms target. The database is a temporary SQLite file (the
embedded default); the HTTP layer is Flask's test client, so sockets are not counted.

    .venv/bin/python bench/metric_history.py            # 100,000 epochs x 10 layers
    .venv/bin/python bench/metric_history.py --quick    # 10,000 epochs
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from event_stream import best_of  # bench/ is on sys.path when run as a script
from sqlalchemy import text

from jobs.auth import get_or_create_user, issue_token
from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.metric_writer import EpochMetric, LayerMetric, insert_ignoring_duplicates
from jobs.models import Base, Job
from jobs.settings import Settings
from service.app import create_app

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
            insert_ignoring_duplicates(session, EpochMetric, [
                {"job_id": job_id, "epoch": e, "train_loss": (5.0 if e % 97 == 0 else 1.0 / e),
                 "val_loss": 1.1 / e, "train_accuracy": 0.9, "val_accuracy": 0.8,
                 "learning_rate": 0.1, "seconds": 0.001} for e in block])
            insert_ignoring_duplicates(session, LayerMetric, [
                {"job_id": job_id, "epoch": e, "layer": k, "weight_grad_norm": 0.1 / e,
                 "bias_grad_norm": 0.01, "delta_norm": 0.2, "weight_norm": 1.0,
                 "update_ratio": 1e-3, "dead_fraction": 0.0, "saturated_fraction": 0.1}
                for e in block for k in range(1, LAYERS + 1)])
    return job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10,000 epochs")
    args = parser.parse_args()
    epochs = 10_000 if args.quick else args.epochs
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

        def get(query: str) -> None:
            response = client.get(f"/v1/jobs/{job_id}/metrics{query}", headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)[:300]

        def raw_sql() -> None:
            with engine.connect() as conn:
                for table in ("epoch_metrics", "layer_metrics"):
                    conn.execute(text(f"SELECT * FROM {table} WHERE job_id = :j ORDER BY epoch"),
                                 {"j": job_id}).all()

        results = {"bare SQL fetch (peer)": best_of(args.repeats, raw_sql),
                   "GET metrics (full)": best_of(args.repeats, lambda: get("")),
                   "GET metrics max_points=1000": best_of(args.repeats,
                                                          lambda: get("?max_points=1000"))}
        engine.dispose()
    sql_s = results["bare SQL fetch (peer)"]
    print(f"best of {args.repeats}, SQLite, Flask test client")
    for name, seconds in results.items():
        print(f"  {name:30s} {seconds * 1000:8.1f} ms  {seconds / sql_s:5.2f}x SQL  "
              f"{seconds / TARGET_S:5.2f}x the 300 ms target")


if __name__ == "__main__":
    main()
