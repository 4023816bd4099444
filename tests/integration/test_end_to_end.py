"""Real jobs through HTTP and real worker processes, on both stacks."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from jobs.change_feed import APPLICATION_NAME
from jobs.db import session_scope
from jobs.models import Job
from tests.factories import long_job, xor_job
from tests.integration.services import wait_for_status

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(stack):
    stack.start_worker("w1")
    with stack.server.client(stack.token()) as http:
        yield http


@pytest.fixture(scope="module")
def dataset_id(client):
    resp = client.post("/v1/datasets", json={"name": "xor", "builtin": "xor"})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_ready(client):
    resp = client.get("/ready")
    assert resp.status_code == 200, resp.text


def test_xor_job_trains_and_records_every_epoch(client, dataset_id):
    resp = client.post("/v1/jobs", json=xor_job(dataset_id, epochs=500))
    assert resp.status_code == 202, resp.text
    job = wait_for_status(client, resp.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    assert job["summary"]["final_train_accuracy"] == 1.0
    metrics = client.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert metrics["epoch"] == list(range(1, 501))
    assert len(metrics["layers"][1]["delta_norm"]) == 500
    pred = client.post(f"/v1/jobs/{job['id']}/predict",
                       json={"X": [[0, 0], [0, 1], [1, 0], [1, 1]]}).json()
    assert pred["predictions"] == ["0", "1", "1", "0"]


def test_metrics_are_readable_while_the_job_runs(client):
    moons = client.post("/v1/datasets", json={"name": "moons", "builtin": "moons",
                                              "n_samples": 400})
    assert moons.status_code == 201, moons.text
    job_id = client.post("/v1/jobs", json=long_job(moons.json()["id"])).json()["id"]
    running = wait_for_status(client, job_id, {"running"})
    assert running["status"] == "running"
    seen = wait_for_progress(client, job_id, 50)
    partial = client.get(f"/v1/jobs/{job_id}/metrics").json()
    assert len(partial["epoch"]) >= seen > 0
    later = client.get(f"/v1/jobs/{job_id}/metrics",
                       params={"since_epoch": partial["epoch"][-1]}).json()
    assert all(e > partial["epoch"][-1] for e in later["epoch"])
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    final = wait_for_status(client, job_id, {"cancelled"}, timeout=30)
    assert final["progress"]["epoch"] < 100_000


def wait_for_progress(client, job_id: str, epochs: int, timeout: float = 60) -> int:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        epoch = client.get(f"/v1/jobs/{job_id}").json()["progress"]["epoch"]
        if epoch >= epochs:
            return epoch
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} made no progress")


def test_bad_spec_is_refused_before_queueing(client, dataset_id):
    body = xor_job(dataset_id)
    body["network"]["layers"][0]["activation"] = "sigmoidd"
    resp = client.post("/v1/jobs", json=body)
    assert resp.status_code == 422
    assert resp.json()["error"]["details"][0]["field"] == "network.layers[0].activation"


def test_a_polled_job_shows_what_the_worker_commits_well_within_the_cache_age(client, stack,
                                                                              dataset_id):
    """Polls are answered from the API's cache (service/poll_cache.py), kept current on
    PostgreSQL by the job-change feed and on SQLite by a version check per poll: the job
    finishing shows within a second of its commit, not after `poll_cache_seconds` (5 s)."""
    job_id = client.post("/v1/jobs", json=xor_job(dataset_id, epochs=20000)).json()["id"]
    committed_at = None
    deadline = time.monotonic() + 120
    while client.get(f"/v1/jobs/{job_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the job did not finish"
        if committed_at is None and _stored_status(stack, job_id) == "succeeded":
            committed_at = time.monotonic()
        time.sleep(0.02)
    assert committed_at is None or time.monotonic() - committed_at < 1.0
    if stack.kind != "embedded":  # the answers came through the feed, not version checks
        with session_scope(stack.factory) as session:
            feeds = session.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
                "AND datname = current_database()"), {"name": APPLICATION_NAME}).scalar_one()
        assert feeds == 1


def _stored_status(stack, job_id: str) -> str:
    with session_scope(stack.factory) as session:
        return session.get(Job, job_id).status
