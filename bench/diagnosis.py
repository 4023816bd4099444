"""Cost of issue 9's introspection, against peers measured in the same run.

1. Diagnosis of a job with 100,000 recorded epochs (3 layers) in SQLite: the first
   computation (a full pass), a repeated poll (cached: reads only new epochs), and a poll
   after 100 more epochs, against `read_metrics` of the same job (what the metrics
   endpoint does) and against `job_to_dict` (the rest of GET /v1/jobs/{id}).
2. A gradient check at the endpoint's parameter limit: finite differences against one
   backprop pass, on the same network and rows.

Usage::

    .venv/bin/python bench/diagnosis.py            # 100k epochs
    .venv/bin/python bench/diagnosis.py --quick    # 10k epochs
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert, update

import mlp
from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.diagnosis import _cache, diagnose
from jobs.introspection import MAX_GRADCHECK_PARAMETERS
from jobs.job_views import job_to_dict
from jobs.metric_reader import read_metrics
from jobs.models import Base, EpochMetric, Job, User

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not installed
from tests.factories import epoch_rows  # noqa: E402

SPEC = {"network": {"layers": [{"units": 16, "activation": "tanh"},
                               {"units": 16, "activation": "relu"},
                               {"units": 1, "activation": "sigmoid"}]}}


def timed(action, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def fill(factory, epochs: int, first: int = 1) -> None:
    rng = np.random.default_rng(0)
    loss = 0.7 * np.exp(-np.arange(first, first + epochs) / 5000) + 0.01 * rng.random(epochs)
    with session_scope(factory) as s:
        s.execute(insert(EpochMetric), [epoch_rows("bench", {
            "epoch": first + i, "train_loss": float(v), "learning_rate": 0.1, "seconds": 0.001,
            "layers": [{"layer": layer, "delta_norm": 0.1 * layer, "weight_grad_norm": 0.2,
                        "dead_fraction": 0.0 if layer == 2 else None,
                        "saturated_fraction": 0.01 if layer == 1 else None}
                       for layer in (1, 2, 3)]}) for i, v in enumerate(loss)])
        # the progress moves with the rows, as a metric flush moves it
        s.execute(update(Job).where(Job.id == "bench").values(epoch=first + epochs - 1))


def bench_diagnosis(epochs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        Base.metadata.create_all(engine)
        factory = make_sessionmaker(engine)
        with session_scope(factory) as s:
            s.add(User(id="u", name="bench"))
            s.flush()  # the job's foreign key needs the user row first
            s.add(Job(id="bench", owner_id="u", spec=SPEC, epochs=epochs + 100, epoch=epochs,
                      status="running"))
        fill(factory, epochs)
        with factory() as s:
            job = s.get(Job, "bench")
            first = timed(lambda: diagnose(s, job))
            poll = timed(lambda: diagnose(s, job), repeats=20)
            metrics = timed(lambda: read_metrics(s, job))
            view = timed(lambda: job_to_dict(job), repeats=20)
        fill(factory, 100, first=epochs + 1)
        with factory() as s:
            job = s.get(Job, "bench")
            more = timed(lambda: diagnose(s, job))
            _cache.clear()
            full_again = timed(lambda: diagnose(s, job))
        engine.dispose()
    print(f"diagnosis, {epochs} epochs x 3 layers (SQLite):")
    print(f"  first (full pass)        {first * 1e3:9.1f} ms   {first / metrics:6.2f}x "
          f"read_metrics ({metrics * 1e3:.1f} ms)")
    print(f"  repeated poll (cached)   {poll * 1e3:9.3f} ms   {poll / view:6.1f}x job_to_dict "
          f"({view * 1e3:.3f} ms); {first / poll:,.0f}x faster than the first")
    print(f"  after 100 new epochs     {more * 1e3:9.3f} ms   {full_again / more:,.0f}x faster "
          f"than a full pass ({full_again * 1e3:.1f} ms)")


def bench_gradcheck() -> None:
    # Two hidden layers of 66 units on 80 inputs: just under the endpoint's limit.
    spec = {"network": {"layers": [{"units": 66, "activation": "tanh"},
                                   {"units": 66, "activation": "tanh"},
                                   {"units": 1, "activation": "sigmoid"}]},
            "loss": "binary_cross_entropy", "training": {"seed": 0}}
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 80)), rng.integers(0, 2, 64)
    result = mlp.gradient_check(spec, X, y, n_classes=2, samples=64)
    bp, fd = result["backprop"]["seconds"], result["finite_differences"]["seconds"]
    print(f"gradient check, {result['parameters']} parameters (limit "
          f"{MAX_GRADCHECK_PARAMETERS}), 64 rows: backprop {bp * 1e3:.2f} ms "
          f"(1 forward + 1 backward), finite differences {fd:.2f} s "
          f"({result['finite_differences']['forward_passes']} forward passes): "
          f"{fd / bp:,.0f}x; max relative error {result['max_rel_error']:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    bench_diagnosis(10_000 if args.quick else 100_000)
    bench_gradcheck()


if __name__ == "__main__":
    main()
