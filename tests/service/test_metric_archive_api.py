"""GET /v1/jobs/{id}/metrics of a really finished job: the archive answers as the rows do."""
from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from jobs.db import session_scope
from jobs.metric_archive import JSON_KIND, KIND, metrics_json
from jobs.metric_reader import metrics_csv, read_rows
from jobs.models import Artifact, Job
from tests.factories import xor_job

QUERIES = [(0, None), (250, None), (400, None), (0, 20), (0, 1000), (100, 9)]


@pytest.fixture
def finished(client, alice, xor_dataset, train):
    job = client.post("/v1/jobs", json=xor_job(xor_dataset, epochs=300), headers=alice).get_json()
    assert train(job["id"]) == "succeeded"
    return job["id"]


def archives(session_factory, job_id: str) -> int:
    with session_scope(session_factory) as session:
        return session.scalar(select(func.count()).select_from(Artifact).where(
            Artifact.job_id == job_id, Artifact.kind.in_((KIND, JSON_KIND))))


def from_rows(session_factory, job_id: str, since_epoch: int, max_points: int | None):
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        rows = read_rows(session, job, since_epoch, max_points)
        return metrics_json(rows, job_id=job.id, status=job.status), metrics_csv(rows)


def get(client, headers, job_id: str, since_epoch: int, max_points: int | None, fmt="json"):
    query = f"?since_epoch={since_epoch}&format={fmt}"
    if max_points is not None:
        query += f"&max_points={max_points}"
    resp = client.get(f"/v1/jobs/{job_id}/metrics{query}", headers=headers)
    assert resp.status_code == 200
    return resp


def test_archive_responses_equal_the_rows(client, alice, finished, session_factory):
    assert archives(session_factory, finished) == 2  # written by the worker at the end
    for since_epoch, max_points in QUERIES:
        body, csv = from_rows(session_factory, finished, since_epoch, max_points)
        resp = get(client, alice, finished, since_epoch, max_points)
        assert resp.mimetype == "application/json"
        assert resp.get_json() == client.application.json.loads(body)
        assert resp.get_data() == body  # byte for byte, key order included
        assert get(client, alice, finished, since_epoch, max_points, "csv").get_data(
            as_text=True) == csv


def test_a_job_finished_before_archives_gets_one_on_first_read(client, alice, finished,
                                                               session_factory):
    with session_scope(session_factory) as session:
        session.execute(delete(Artifact).where(Artifact.kind.in_((KIND, JSON_KIND))))
    body, _ = from_rows(session_factory, finished, 0, 20)
    assert get(client, alice, finished, 0, 20).get_data() == body  # builds and stores it
    assert archives(session_factory, finished) == 2
    body, _ = from_rows(session_factory, finished, 0, None)
    assert get(client, alice, finished, 0, None).get_data() == body


def test_a_running_job_is_read_from_its_rows(client, alice, finished, session_factory):
    with session_scope(session_factory) as session:
        session.execute(delete(Artifact).where(Artifact.kind.in_((KIND, JSON_KIND))))
        session.get(Job, finished).status = "running"
    body, _ = from_rows(session_factory, finished, 290, None)
    assert get(client, alice, finished, 290, None).get_data() == body
    assert archives(session_factory, finished) == 0


def test_a_job_cancelled_while_queued_has_empty_metrics(client, alice, xor_dataset,
                                                        session_factory):
    job = client.post("/v1/jobs", json=xor_job(xor_dataset), headers=alice).get_json()
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice).status_code == 202
    m = get(client, alice, job["id"], 0, None).get_json()
    assert m["status"] == "cancelled" and m["epoch"] == [] and m["nonfinite"] is False
    assert [layer["delta_norm"] for layer in m["layers"]] == [[], []]
    assert archives(session_factory, job["id"]) == 2
    assert get(client, alice, job["id"], 0, None).get_json() == m  # now from the archive
