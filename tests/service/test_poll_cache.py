"""Polled reads served again while the job row is unchanged (here on SQLite, where every
poll checks the job's version), coalesced while computed, bounded in age and size."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event

from jobs.db import session_scope
from jobs.models import Job
from service.poll_cache import MAX_ENTRY_BYTES, MAX_TOTAL_BYTES, PollCache
from tests.factories import claimed_metric_buffer, epoch_record

POLLS = ["/v1/jobs/{id}", "/v1/jobs/{id}/metrics?since_epoch=0",
         "/v1/jobs/{id}/metrics?since_epoch=2&max_points=10", "/v1/jobs/{id}/metrics?format=csv"]


@pytest.mark.parametrize("path", POLLS)
def test_a_repeated_poll_reads_only_the_job_version(client, alice, job_id, statements, path):
    url = path.format(id=job_id)
    first = client.get(url, headers=alice)
    assert first.status_code == 200
    computed = len(statements)
    statements.clear()
    again = client.get(url, headers=alice)
    assert (again.status_code, again.data, again.mimetype) == (200, first.data, first.mimetype)
    assert len(statements) == 1 and "updated_at" in statements[0]
    assert "jobs.spec" not in statements[0]  # the version only, not the job
    assert computed > 1


def test_every_metric_flush_shows_at_once(client, alice, job_id, session_factory):
    url = f"/v1/jobs/{job_id}/metrics"
    assert client.get(url, headers=alice).get_json()["epoch"] == []
    buffer = claimed_metric_buffer(session_factory, job_id)
    for epoch in (1, 2):
        buffer.add(epoch_record(epoch))
        buffer.flush()
        body = client.get(url, headers=alice).get_json()
        assert body["epoch"] == list(range(1, epoch + 1)) and body["status"] == "running"
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).get_json()["progress"]["epoch"] == 2


def test_a_finished_job_is_seen_finished_with_all_its_metrics(client, alice, job_id, train):
    polls = [f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/metrics"]
    before = [client.get(url, headers=alice).get_json() for url in polls]
    assert before[0]["status"] == "queued" and before[1]["epoch"] == []
    assert train(job_id) == "succeeded"
    job, metrics = (client.get(url, headers=alice).get_json() for url in polls)
    assert job["status"] == "succeeded" and job["progress"]["epoch"] == 5
    assert metrics["status"] == "succeeded" and metrics["epoch"] == [1, 2, 3, 4, 5]


def test_a_cancel_shows_in_the_next_poll(client, alice, job_id):
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).get_json()["cancel_requested"] is False
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=alice).status_code == 202
    polled = client.get(f"/v1/jobs/{job_id}", headers=alice).get_json()
    assert polled["status"] == "cancelled"


def test_a_cached_answer_is_never_served_to_another_user(client, alice, auth, job_id):
    for _ in range(2):
        assert client.get(f"/v1/jobs/{job_id}", headers=alice).status_code == 200
    bob = auth("bob")
    for url in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/metrics"):
        resp = client.get(url, headers=bob)
        assert resp.status_code == 404
        assert set(resp.get_json()) == {"error"} and resp.get_json()["error"]["code"] == "not_found"


def test_a_write_by_the_same_user_drops_their_entries(client, alice, job_id, app,
                                                      session_factory):
    """A change outside the job row (here a dataset id set to null, as deleting the dataset
    does) is not in the version: the user's own write through this process drops the entry."""
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).get_json()["dataset_id"] is not None
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        version = (job.updated_at, job.status, job.epoch)
    with session_scope(session_factory) as session:
        session.connection().exec_driver_sql(
            "UPDATE jobs SET dataset_id = NULL WHERE id = ?", (job_id,))  # updated_at kept
    stale = client.get(f"/v1/jobs/{job_id}", headers=alice).get_json()
    assert stale["dataset_id"] is not None  # served from the cache: the version is unchanged
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        assert (job.updated_at, job.status, job.epoch) == version
    resp = client.post("/v1/datasets", json={"name": "other", "builtin": "xor"}, headers=alice)
    assert resp.status_code == 201
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).get_json()["dataset_id"] is None


def test_entries_expire_and_stay_within_their_bounds():
    now = [0.0]
    cache = PollCache(max_age=5.0, clock=lambda: now[0])
    cache.put(("u", "/a"), "j1", ("v1",), b"body", "application/json")
    entry = cache.young(("u", "/a"))
    assert (entry.body, entry.mimetype, entry.version) == (b"body", "application/json", ("v1",))
    assert cache.young(("w", "/a")) is None   # another user
    now[0] = 5.0
    assert cache.young(("u", "/a")) is None   # too old
    cache.put(("u", "/big"), "j1", ("v1",), b"x" * (MAX_ENTRY_BYTES + 1), "text/csv")
    assert cache.young(("u", "/big")) is None and cache.size_bytes == 4
    chunk = b"x" * MAX_ENTRY_BYTES
    for i in range(MAX_TOTAL_BYTES // MAX_ENTRY_BYTES + 3):
        cache.put(("u", f"/{i}"), "j1", ("v1",), chunk, "text/csv")
        assert cache.size_bytes <= MAX_TOTAL_BYTES
    cache.drop_user("u")
    assert cache.size_bytes == 0


def test_a_change_of_a_job_drops_its_entries_only():
    cache = PollCache(max_age=5.0)
    for user, path, job in (("u", "/a", "j1"), ("w", "/a", "j1"), ("u", "/b", "j2")):
        cache.put((user, path), job, ("v1",), b"body", "application/json")
    cache.job_changed("j1")
    assert cache.young(("u", "/a")) is None and cache.young(("w", "/a")) is None
    assert cache.young(("u", "/b")) is not None and cache.size_bytes == 4
    cache.job_changed("j2")
    assert cache.size_bytes == 0 and cache.listening() == 0  # no feed on this cache


def test_a_zero_max_age_turns_the_cache_off(settings, session_factory, alice, job_id):
    from service import create_app
    app = create_app(settings.model_copy(update={"poll_cache_seconds": 0.0}))
    statements = []
    event.listen(app.extensions["gradtrace_engine"], "before_cursor_execute",
                 lambda conn, cursor, sql, *args: statements.append(sql))
    client = app.test_client()
    for _ in range(2):
        statements.clear()
        assert client.get(f"/v1/jobs/{job_id}", headers=alice).status_code == 200
        assert "jobs.spec" in statements[0]  # the whole job loaded, every time


def test_identical_polls_arriving_together_are_computed_once(app, alice, job_id, monkeypatch):
    """Dashboards opening on one job ask for the same answer at once: one thread of the
    process computes it, the others wait and get it."""
    from service.routes import results
    computed, started = [], threading.Barrier(5)
    real = results._metrics

    def slow(session, job, query):
        computed.append(job.id)
        time.sleep(0.3)
        return real(session, job, query)
    monkeypatch.setattr(results, "_metrics", slow)

    def poll():
        started.wait()
        resp = app.test_client().get(f"/v1/jobs/{job_id}/metrics", headers=alice)
        return resp.status_code, resp.data
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: poll(), range(5)))
    assert computed == [job_id]
    assert len(set(answers)) == 1 and answers[0][0] == 200
