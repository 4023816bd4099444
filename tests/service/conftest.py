"""Service fixtures: a user with a dataset and a queued job, a helper that trains a job
in-process, and the SQL statements the app runs."""
from __future__ import annotations

import pytest

from jobs.training import run_job
from tests.factories import xor_job


@pytest.fixture
def alice(auth):
    return auth("alice")


@pytest.fixture
def xor_dataset(client, alice) -> str:
    resp = client.post("/v1/datasets", json={"name": "xor", "builtin": "xor"}, headers=alice)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


@pytest.fixture
def train(session_factory, settings):
    """Run a queued job to completion in this process (the worker's function, no broker)."""
    def run(job_id: str) -> str:
        return run_job(session_factory, settings, job_id, worker_id="test-worker")
    return run


@pytest.fixture
def statements(app, record_sql):
    """The SQL statements the app runs, in order (see record_sql)."""
    return record_sql(app.extensions["gradtrace_engine"])


@pytest.fixture
def job_id(client, alice, xor_dataset) -> str:
    resp = client.post("/v1/jobs", json=xor_job(xor_dataset, epochs=5), headers=alice)
    assert resp.status_code == 202
    return resp.get_json()["id"]
