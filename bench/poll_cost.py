"""What one polled request costs the API process, with and without the poll cache.

In one process, with no sockets between client and app (Flask's test client), against
PostgreSQL and Redis as deployed: a running job with 300 recorded epochs (spirals,
64-64-1), polled through `GET /v1/jobs/{id}` and `GET /v1/jobs/{id}/metrics?since_epoch=295`
by an app with the poll cache (service/poll_cache.py) and one without it
(`poll_cache_seconds=0`), and the app's `GET /health` as the no-op peer, all in the
same run, interleaved, best of the rounds. This is the per-request cost that
bench/api_load.py's throughput ratio divides; it does not depend on the load generator
or on how busy the machine's other processes are.

    .venv/bin/python bench/poll_cost.py
    .venv/bin/python bench/poll_cost.py --rounds 3 --requests 50

Needs PostgreSQL on 127.0.0.1:5432 and Redis on :6379.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlp  # noqa: E402
from jobs.db import make_engine, make_sessionmaker, session_scope  # noqa: E402
from jobs.lease import claim  # noqa: E402
from jobs.metric_writer import MetricBuffer  # noqa: E402
from jobs.settings import Settings  # noqa: E402
from service import create_app  # noqa: E402
from tests.factories import bearer, make_token  # noqa: E402
from tests.integration.services import (fresh_postgres_database, migrate, redis_url,  # noqa: E402
                                        unique_queue)

EPOCHS = 300
SPEC = {"network": {"layers": [{"units": 64, "activation": "tanh"},
                               {"units": 64, "activation": "tanh"},
                               {"units": 1, "activation": "sigmoid"}]},
        "loss": "binary_cross_entropy", "optimizer": {"name": "adam", "learning_rate": 0.01},
        "training": {"epochs": 100_000, "batch_size": 32, "seed": 0}}


def running_job(client, factory, headers) -> str:
    """Submit a job, claim it as a worker would and store EPOCHS epochs of its metrics."""
    ds = client.post("/v1/datasets", json={"builtin": "spirals", "name": "s"}, headers=headers)
    job = client.post("/v1/jobs", json={"dataset_id": ds.get_json()["id"], "name": "poll",
                                        **SPEC}, headers=headers).get_json()["id"]
    with session_scope(factory) as session:
        lease = claim(session, job, "bench-worker", ttl_s=3600, max_attempts=3)
    X, y, _ = mlp.datasets.make("spirals")
    spec = {**SPEC, "training": {**SPEC["training"], "epochs": EPOCHS}}
    buffer = MetricBuffer(factory, lease, flush_seconds=60, flush_rows=100)
    mlp.Trainer(spec, X, y, n_classes=2).fit(on_epoch=buffer.add)
    buffer.flush(EPOCHS)
    return job


def per_request_ms(client, path: str, headers: dict, n: int) -> float:
    for _ in range(10):
        client.get(path, headers=headers)
    started = time.perf_counter()
    for _ in range(n):
        assert client.get(path, headers=headers).status_code == 200
    return (time.perf_counter() - started) / n * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        db_url = stack.enter_context(fresh_postgres_database())
        migrate(db_url)
        settings = Settings.from_env(
            state_dir=tmp / "state", database_url=db_url, broker_url=redis_url(12),
            storage_dir=tmp / "storage", token_pepper="bench-" + os.urandom(8).hex(),
            queue=unique_queue(), rate_limit="10000000 per minute")
        settings.ensure_dirs()
        engine = make_engine(db_url)
        stack.callback(engine.dispose)
        factory = make_sessionmaker(engine)
        headers = bearer(make_token(factory, settings.token_pepper, "poll-bench"))
        apps = {"cache": create_app(settings).test_client(),
                "no cache": create_app(settings.model_copy(
                    update={"poll_cache_seconds": 0.0})).test_client()}
        job = running_job(apps["cache"], factory, headers)
        paths = {"job": f"/v1/jobs/{job}", "metrics": f"/v1/jobs/{job}/metrics?since_epoch=295"}
        best: dict[tuple[str, str], float] = {}
        for _ in range(args.rounds):
            for name, client in apps.items():
                for what, path in paths.items():
                    ms = per_request_ms(client, path, headers, args.requests)
                    best[name, what] = min(best.get((name, what), ms), ms)
            ms = per_request_ms(apps["cache"], "/health", {}, args.requests)
            best["peer", "health"] = min(best.get(("peer", "health"), ms), ms)
    health = best["peer", "health"]
    print(f"best of {args.rounds} rounds of {args.requests} requests; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'app':10s} {'request':10s} {'ms':>7s} {'x /health':>10s}")
    for (name, what), ms in sorted(best.items()):
        print(f"{name:10s} {what:10s} {ms:7.2f} {ms / health:10.2f}")


if __name__ == "__main__":
    main()
