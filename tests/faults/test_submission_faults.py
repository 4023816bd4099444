"""Scenarios 5, 6 and 7: a poison job, the API dying before the publish, retried POSTs."""
from __future__ import annotations

import threading
import time

import httpx
import pytest
from sqlalchemy import func, select

from jobs.artifacts import CHECKPOINT, load_artifact
from jobs.db import session_scope
from jobs.models import Job
from tests.faults.conftest import FAULT_SPEC, create_dataset, submit
from tests.integration.services import HttpServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture(scope="module")
def stack(make_stack):
    built = make_stack(fault_injection="kill_worker_on_job:poison")
    built.supervise(2)
    return built


@pytest.fixture(scope="module")
def client(stack):
    with stack.client() as http:
        yield http


@pytest.fixture(scope="module")
def dataset_id(client):
    return create_dataset(client)


def test_a_poison_job_fails_after_max_attempts_and_others_run(stack, client, dataset_id):
    """Scenario 5: the worker process dies every time it starts the job."""
    restarts = stack.restarts
    started = time.monotonic()
    poison = submit(client, dataset_id, name="poison-pill")
    healthy = [submit(client, dataset_id, name=f"healthy-{i}") for i in range(3)]
    stack.wait([poison, *healthy], timeout=180)
    elapsed = time.monotonic() - started
    job = stack.job(poison)
    figures = stack.reconcile("5. poison job kills its worker every time", healthy,
                              note=f"poison job failed after {job.attempts} attempts in "
                                   f"{elapsed:.1f} s, {stack.restarts - restarts} worker restarts")
    assert job.status == "failed" and job.attempts == stack.settings.max_attempts == 3
    assert job.error.startswith("gave up after 3 attempts: the worker died each time (last: ")
    assert figures.completed == figures.identical == 3 and figures.duplicates == 0
    assert stack.restarts - restarts == 3


def test_a_job_committed_before_the_api_died_still_runs(stack, client, dataset_id):
    """Scenario 6: the API raises after the commit and before the publish."""
    crashing = HttpServer(_api(stack, "after_commit_before_publish"))
    accepted, recoveries = [], []
    try:
        with crashing.client(client.headers["Authorization"].split()[1]) as api:
            for i in range(3):
                body = {"dataset_id": dataset_id, "name": f"unpublished-{i}", **FAULT_SPEC}
                sent = time.monotonic()
                assert api.post("/v1/jobs", json=body).status_code == 500  # the "crash"
                job_id = _job_named(stack, f"unpublished-{i}")
                accepted.append(job_id)
                wait_until(lambda j=job_id: stack.job(j).status != "queued", 60)
                recoveries.append(time.monotonic() - sent)
    finally:
        crashing.stop()
    stack.wait(accepted)
    figures = stack.reconcile("6. API died between commit and publish", accepted,
                              recoveries=recoveries, note="recovery = POST to training start "
                              f"(re-send after {stack.settings.requeue_queued_after_s:g} s)")
    assert figures.completed == figures.identical == 3


def test_ten_concurrent_identical_posts_make_one_job(stack, client, dataset_id):
    """Scenario 7: ten threads POST the same body with one Idempotency-Key at once."""
    body = {"dataset_id": dataset_id, "name": "retried", **FAULT_SPEC}
    headers = {"Idempotency-Key": "fault-suite-key-1", **client.headers}
    barrier, answers = threading.Barrier(10), []

    def post():
        with httpx.Client(base_url=stack.server.url, timeout=30) as http:
            barrier.wait()
            answers.append(http.post("/v1/jobs", json=body, headers=headers))

    threads = [threading.Thread(target=post) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [202] * 10, [r.text for r in answers]
    ids = {r.json()["id"] for r in answers}
    with session_scope(stack.factory) as session:
        stored = session.scalar(select(func.count()).select_from(Job).where(
            Job.idempotency_key == "fault-suite-key-1"))
    assert len(ids) == 1 and stored == 1
    stack.wait(ids)
    figures = stack.reconcile("7. ten concurrent identical POSTs, one Idempotency-Key",
                              list(ids), note=f"{len(answers)} answers, {len(ids)} job id, "
                                              f"{stored} row")
    assert figures.completed == figures.identical == 1
    other = client.post("/v1/jobs", json={**body, "name": "another body"},
                        headers={"Idempotency-Key": "fault-suite-key-1"})
    assert other.status_code == 422


def _api(stack, fault: str):
    from service import create_app

    return create_app(stack.settings.model_copy(update={"fault_injection": fault}))


def _job_named(stack, name: str) -> str:
    with session_scope(stack.factory) as session:
        return session.scalar(select(Job.id).where(Job.name == name))


def test_cancel_takes_effect_within_seconds(stack, client, dataset_id):
    job_id = submit(client, dataset_id, name="cancel-me", epochs=100000)
    wait_until(lambda: stack.job(job_id).epoch >= 20, 60)
    asked = time.monotonic()
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    wait_until(lambda: stack.job(job_id).status == "cancelled", 30)
    latency = time.monotonic() - asked
    print(f"cancel: cancelled {latency:.2f} s after the request")
    assert latency < 5.0
    with session_scope(stack.factory) as session:
        assert load_artifact(session, job_id, CHECKPOINT) is not None


def test_runtime_limit_fails_the_job_and_keeps_its_metrics(stack, client, dataset_id):
    job_id = submit(client, dataset_id, name="slow", epochs=100000, max_runtime_s=1.5)
    stack.wait([job_id], timeout=60)
    job = stack.job(job_id)
    assert job.status == "failed" and "runtime limit of 1.5 s" in job.error
    metrics = client.get(f"/v1/jobs/{job_id}/metrics").json()
    assert len(metrics["epoch"]) == job.epoch > 0
