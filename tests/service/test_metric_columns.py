"""The metric and plot routes read a long-running job's history from the process's copy of
its columns (jobs/running_columns.py), which follows each new flush."""
from __future__ import annotations

import pytest

from jobs.db import session_scope
from jobs.models import Job
from service.metric_columns import EXTENSION
from tests.factories import claimed_metric_buffer, epoch_record

LAYERS = 2  # the XOR job's network
HISTORY = 1200


@pytest.fixture
def long_history(session_factory, job_id):
    """The job, running, with HISTORY epochs stored; call it to flush more."""
    buffer = claimed_metric_buffer(session_factory, job_id)
    stored = [0]

    def add(epochs: int) -> None:
        for epoch in range(stored[0] + 1, stored[0] + epochs + 1):
            buffer.add(epoch_record(epoch, LAYERS))
        stored[0] += epochs
        buffer.flush()
    add(HISTORY)
    return add


def test_a_long_history_is_read_once_then_followed(client, alice, app, job_id, long_history,
                                                   statements):
    copies = app.extensions[EXTENSION]
    url = f"/v1/jobs/{job_id}/metrics?since_epoch=0"
    first = client.get(url, headers=alice).get_json()
    assert job_id in copies and first["epoch"] == list(range(1, HISTORY + 1))
    long_history(5)
    statements.clear()
    body = client.get(url, headers=alice).get_json()
    n = HISTORY + 5
    assert body["epoch"] == list(range(1, n + 1)) and body["status"] == "running"
    assert body["layers"][1]["delta_norm"] == [e + 0.2 for e in range(1, n + 1)]
    # The old epochs came from the copy: the metric read asked only for the new ones.
    metric_reads = [s for s in statements if "_metrics" in s]
    assert len(metric_reads) == 1 and "epoch >" in metric_reads[0]
    statements.clear()
    again = client.get(f"/v1/jobs/{job_id}/metrics?since_epoch={n - 3}", headers=alice)
    assert again.get_json()["epoch"] == [n - 2, n - 1, n]
    assert not [s for s in statements if "_metrics" in s]  # no flush since: no metric read


def test_downsampled_reads_and_plots_use_the_copy(client, alice, app, job_id, long_history,
                                                  statements):
    sampled = client.get(f"/v1/jobs/{job_id}/metrics?max_points=100", headers=alice)
    assert sampled.status_code == 200 and job_id in app.extensions[EXTENSION]
    assert len(sampled.get_json()["epoch"]) <= 100
    statements.clear()
    plot = client.get(f"/v1/jobs/{job_id}/plot.png", headers=alice)
    assert plot.status_code == 200 and plot.data.startswith(b"\x89PNG")
    assert not [s for s in statements if "_metrics" in s]  # drawn from the copy


def test_a_finished_job_is_read_from_its_archive(client, alice, app, job_id, long_history,
                                                 session_factory):
    client.get(f"/v1/jobs/{job_id}/metrics", headers=alice)
    assert job_id in app.extensions[EXTENSION]
    with session_scope(session_factory) as session:
        session.get(Job, job_id).status = "cancelled"  # as the worker finishes it
    body = client.get(f"/v1/jobs/{job_id}/metrics", headers=alice).get_json()
    assert body["status"] == "cancelled" and len(body["epoch"]) == HISTORY
    assert job_id not in app.extensions[EXTENSION]
