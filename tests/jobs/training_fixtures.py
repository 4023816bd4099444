"""Helpers for the worker-side tests: a stored dataset and queued jobs on it."""
from __future__ import annotations

import threading

from jobs.datasets import create_dataset, parse_builtin
from jobs.db import session_scope
from jobs.models import Job, User
from jobs.storage import BlobStore
from jobs.submission import create_job

MOONS_SPEC = {
    "network": {"layers": [{"units": 8, "activation": "tanh"},
                           {"units": 2, "activation": "softmax"}]},
    "loss": "cross_entropy",
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 30, "batch_size": 8, "seed": 3},
}


def make_dataset(factory, settings, owner_id: str, n_samples: int = 64) -> str:
    with session_scope(factory) as session:
        ds = create_dataset(session, BlobStore(settings.storage_dir), owner_id=owner_id,
                            name="moons", parsed=parse_builtin("moons", n_samples=n_samples),
                            source="builtin", max_storage_bytes=10**9)
        return ds.id


def make_job(factory, settings, owner_id: str, dataset_id: str, *, name: str = "moons",
             **training) -> str:
    spec = {**MOONS_SPEC, "training": {**MOONS_SPEC["training"], **training}}
    with session_scope(factory) as session:
        job, _ = create_job(session, settings, owner_id=owner_id, dataset_id=dataset_id,
                            name=name, raw_spec=spec)
        session.flush()
        return job.id


def bare_job(factory, user_name: str) -> str:
    """A queued job with an empty spec and no dataset, owned by a new user: for tests of the
    job row's lifecycle (lease, metric writes) that never train."""
    with session_scope(factory) as session:
        user = User(name=user_name)
        session.add(user)
        session.flush()
        job = Job(owner_id=user.id, spec={}, epochs=10, status="queued")
        session.add(job)
        session.flush()
        return job.id


def job_row(factory, job_id: str) -> Job:
    with session_scope(factory) as session:
        return session.get(Job, job_id)


class StopAfter(threading.Event):
    """A shutdown flag that reads as set from its n-th poll on: a SIGTERM at batch n."""

    def __init__(self, polls: int):
        super().__init__()
        self._left = polls

    def is_set(self) -> bool:
        self._left -= 1
        return self._left < 0 or super().is_set()
