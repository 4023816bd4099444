"""GET /v1/jobs/{id}/events: the live stream, read byte by byte from real HTTP servers.

Integration tests run on both stacks (PostgreSQL + Redis, and the embedded default) with a
real worker process; one also serves the API with gunicorn's gthread workers, as deployed.
Fast in-process tests cover the refusals.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.client.live_server import queued_job
from tests.factories import xor_job
from tests.integration.conftest import stack  # noqa: F401 - the shared integration fixture
from tests.integration.services import ROOT, HttpServer, wait_for_status


@dataclass
class WireEvent:
    kind: str | None = None
    id: str | None = None
    data: object = None
    comments: list[str] = field(default_factory=list)


def read_events(lines, until=lambda e: e.kind == "done"):
    """Parse text/event-stream framing by hand (comments kept) until `until` or the end.
    `lines` is a response's iter_lines(), or an iterator over it to read in parts."""
    events: list[WireEvent] = []
    current = WireEvent()
    for line in lines:
        if line == "":
            if current.kind or current.comments:
                events.append(current)
                if until(current):
                    return events
            current = WireEvent()
        elif line.startswith(":"):
            current.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(": ")
            if name == "data":
                current.data = json.loads(value)
            else:
                setattr(current, {"event": "kind"}.get(name, name), value)
    return events


def epochs_of(events: list[WireEvent]) -> list[int]:
    return [e.data["epoch"] for e in events if e.kind == "epoch"]


# --- in-process: refusals ------------------------------------------------------------------

def test_unknown_or_foreign_job_is_404_json(client, alice, auth, xor_dataset):
    job = client.post("/v1/jobs", json=xor_job(xor_dataset), headers=alice).get_json()
    resp = client.get(f"/v1/jobs/{job['id']}/events", headers=auth("mallory"))
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    assert client.get("/v1/jobs/nope/events", headers=alice).status_code == 404


@pytest.mark.parametrize("last", ["ten", "+0.0", "1.0", " 1", "1_0", "-1"])
def test_token_is_required_and_last_event_id_is_validated(client, alice, xor_dataset, last):
    job = client.post("/v1/jobs", json=xor_job(xor_dataset), headers=alice).get_json()
    assert client.get(f"/v1/jobs/{job['id']}/events").status_code == 401
    resp = client.get(f"/v1/jobs/{job['id']}/events", headers={**alice, "Last-Event-ID": last})
    assert resp.status_code == 422
    assert resp.get_json()["error"]["details"][0]["field"] == "Last-Event-ID"


def test_finished_job_streams_everything_then_done(client, alice, xor_dataset, train):
    job = client.post("/v1/jobs", json=xor_job(xor_dataset, epochs=30), headers=alice).get_json()
    assert train(job["id"]) == "succeeded"
    resp = client.get(f"/v1/jobs/{job['id']}/events", headers={**alice, "Last-Event-ID": "25"})
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    text = resp.get_data(as_text=True)
    assert text.startswith("event: status\nid: 25\ndata: ")
    assert [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")] == [
        25, 26, 27, 28, 29, 30]
    assert text.rstrip("\n").splitlines()[-2] == "event: done"


# --- real worker, real HTTP ----------------------------------------------------------------

@pytest.fixture(scope="module")
def sse(stack):  # noqa: F811 - the fixture imported above
    """A second API on the stack's database with short stream timings, and a worker."""
    from service import create_app

    stack.start_worker("events-w1")
    fast = stack.settings.model_copy(update={"events_poll_s": 0.1, "events_keepalive_s": 0.5})
    server = HttpServer(create_app(fast))
    short = HttpServer(create_app(fast.model_copy(update={"events_max_s": 1.5})))
    token = stack.token("sse-user")
    yield stack, server, short, token
    server.stop()
    short.stop()


@pytest.fixture(scope="module")
def http(sse):
    _, server, _, token = sse
    with server.client(token) as client:
        yield client


@pytest.fixture(scope="module")
def dataset_id(http):
    resp = http.post("/v1/datasets", json={"name": "xor", "builtin": "xor"})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


@pytest.mark.integration
def test_real_job_streams_status_every_epoch_and_done(http, dataset_id):
    job_id = http.post("/v1/jobs", json=xor_job(dataset_id, epochs=300)).json()["id"]
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["cache-control"] == "no-cache"
        assert resp.headers["x-accel-buffering"] == "no"
        events = read_events(resp.iter_lines())
    assert events[0].kind == "status" and events[0].id == "0"
    assert epochs_of(events) == list(range(1, 301))
    assert all(e.id == str(e.data["epoch"]) for e in events if e.kind == "epoch")
    assert all(len(e.data["layers"]) == 2 for e in events if e.kind == "epoch")
    statuses = [e.data["status"] for e in events if e.kind == "status"]
    assert statuses[-1] == "succeeded" and len(statuses) == len(set(statuses))
    done = events[-1]
    assert done.kind == "done" and done.data == http.get(f"/v1/jobs/{job_id}").json()


@pytest.mark.integration
def test_reconnect_mid_run_with_last_event_id_loses_and_repeats_nothing(http, dataset_id):
    job_id = http.post("/v1/jobs", json=xor_job(dataset_id, epochs=4000)).json()["id"]
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        first = read_events(resp.iter_lines(),
                            until=lambda e: e.kind == "epoch" and e.data["epoch"] >= 5)
    last = epochs_of(first)[-1]
    with http.stream("GET", f"/v1/jobs/{job_id}/events",
                     headers={"Last-Event-ID": str(last)}) as resp:
        rest = read_events(resp.iter_lines())
    assert rest[0].kind == "status" and rest[0].id == str(last)
    assert epochs_of(first) + epochs_of(rest) == list(range(1, 4001))
    assert rest[-1].kind == "done" and rest[-1].data["status"] == "succeeded"


@pytest.mark.integration
def test_keepalive_while_queued_then_cancel_ends_with_done(sse, http, dataset_id):
    job_id = queued_job(sse[0], sse[3], dataset_id)
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        lines = resp.iter_lines()
        head = read_events(lines, until=lambda e: "ping" in e.comments)
        again = read_events(lines, until=lambda e: "ping" in e.comments)
        assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        tail = read_events(lines)
    assert head[0].kind == "status" and head[0].data["status"] == "queued"
    assert [e.kind for e in head[1:] + again] == [None, None]  # nothing but pings
    assert [e.data["status"] for e in tail if e.kind == "status"] == ["cancelled"]
    assert tail[-1].kind == "done" and tail[-1].data["status"] == "cancelled"


@pytest.mark.integration
def test_stream_ends_after_events_max_s_and_client_resumes(sse, http, dataset_id):
    stack_, _, short, token = sse
    job_id = http.post("/v1/jobs", json=xor_job(dataset_id, epochs=300)).json()["id"]
    wait_for_status(http, job_id, {"succeeded"})
    queued_id = queued_job(stack_, token, dataset_id)
    with short.client(token) as client:
        started = time.monotonic()
        with client.stream("GET", f"/v1/jobs/{queued_id}/events") as resp:
            events = read_events(resp.iter_lines())
        assert 1.4 <= time.monotonic() - started < 10
        assert events[-1].kind != "done"
        with client.stream("GET", f"/v1/jobs/{job_id}/events",
                           headers={"Last-Event-ID": "299"}) as resp:
            resumed = read_events(resp.iter_lines())
    assert epochs_of(resumed) == [300] and resumed[-1].kind == "done"


# --- gunicorn gthread, as deployed -----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def gunicorn_url(sse):
    stack_ = sse[0]
    port = _free_port()
    log_path = stack_.log_dir / "gunicorn.log"
    env = {**stack_.env, "GRADTRACE_EVENTS_POLL_S": "0.1", "PORT": str(port)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config",
                                 str(ROOT / "service/gunicorn_conf.py"), "--bind",
                                 f"127.0.0.1:{port}", "--workers", "1", "service.wsgi:app"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _healthy(url):
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(30)


@pytest.mark.integration
def test_gunicorn_gthread_streams_two_jobs_at_once(sse, gunicorn_url, http, dataset_id):
    token = sse[3]
    ids = [http.post("/v1/jobs", json=xor_job(dataset_id, epochs=200)).json()["id"]
           for _ in range(2)]
    client = httpx.Client(base_url=gunicorn_url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"})
    with client, client.stream("GET", f"/v1/jobs/{ids[0]}/events") as first, \
            client.stream("GET", f"/v1/jobs/{ids[1]}/events") as second:
        assert first.headers["x-accel-buffering"] == "no"
        results = [read_events(first.iter_lines()), read_events(second.iter_lines())]
    for events in results:
        assert epochs_of(events) == list(range(1, 201))
        assert events[-1].kind == "done" and events[-1].data["status"] == "succeeded"
