"""jobs/event_feed.py on SQLite: what the live stream sends, driven by a fake clock.

The fake `sleep` plays the worker between polls (it commits epochs and status changes),
so each test reads exactly the sequence of events a client would receive.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from jobs.db import session_scope
from jobs.event_feed import Event, FeedTiming, epochs_after, follow
from jobs.models import EpochMetric, Job
from tests.factories import metric_row

SPEC = {"network": {"layers": [{"units": 3, "activation": "tanh"},
                               {"units": 1, "activation": "sigmoid"}]}}


@pytest.fixture
def owner(session_factory, user, session):
    row = user("alice")
    session.commit()
    return row.id


@pytest.fixture
def job_id(session_factory, owner) -> str:
    with session_scope(session_factory) as s:
        job = Job(owner_id=owner, name="j", spec=SPEC, epochs=10, status="queued")
        s.add(job)
        s.flush()
        return job.id


def record(factory, job_id: str, epochs, *, loss=None) -> None:
    """What the worker's MetricBuffer commits: epoch rows with their layers, progress."""
    with session_scope(factory) as s:
        for e in epochs:
            s.add(EpochMetric(**metric_row(
                job_id, e, [{"weight_grad_norm": 0.1 * layer, "bias_grad_norm": 0.01,
                             "delta_norm": 0.2, "weight_norm": 1.0, "update_ratio": 1e-3}
                            for layer in (1, 2)],
                train_loss=loss if loss is not None else 1.0 / e, learning_rate=0.1,
                seconds=0.01)))
        s.execute(update(Job).where(Job.id == job_id).values(epoch=max(epochs)))


def set_status(factory, job_id: str, status: str, error: str | None = None) -> None:
    with session_scope(factory) as s:
        s.execute(update(Job).where(Job.id == job_id).values(status=status, error=error))


class Script:
    """A fake clock whose sleep runs the next scripted worker step."""

    def __init__(self, steps=()):
        self.now, self.steps, self.sleeps = 0.0, list(steps), 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1
        if self.steps:
            self.steps.pop(0)()


def run_feed(factory, owner, job_id, script: Script, **kwargs) -> list[Event]:
    timing = kwargs.pop("timing", FeedTiming(poll_s=0.5, keepalive_s=15, max_s=3600))
    return list(follow(factory, owner, job_id, timing=timing, clock=script.clock,
                       sleep=script.sleep, **kwargs))


def test_status_epochs_in_order_then_done(session_factory, owner, job_id):
    f = session_factory
    script = Script([lambda: set_status(f, job_id, "running"),
                     lambda: record(f, job_id, [1, 2, 3]),
                     lambda: record(f, job_id, [4]),
                     lambda: set_status(f, job_id, "succeeded")])
    events = run_feed(f, owner, job_id, script)
    assert [(e.kind, e.id) for e in events] == [
        ("status", 0), ("status", 0), ("epoch", 1), ("epoch", 2), ("epoch", 3), ("epoch", 4),
        ("status", 4), ("done", None)]
    assert [e.data["status"] for e in events if e.kind == "status"] == [
        "queued", "running", "succeeded"]
    first = events[2].data
    assert first == {"epoch": 1, "train_loss": 1.0, "val_loss": None, "train_accuracy": None,
                     "val_accuracy": None, "learning_rate": 0.1, "layers": [
                         {"layer": 1, "weight_grad_norm": 0.1, "bias_grad_norm": 0.01,
                          "delta_norm": 0.2, "weight_norm": 1.0, "update_ratio": 1e-3,
                          "dead_fraction": None, "saturated_fraction": None},
                         {"layer": 2, "weight_grad_norm": 0.2, "bias_grad_norm": 0.01,
                          "delta_norm": 0.2, "weight_norm": 1.0, "update_ratio": 1e-3,
                          "dead_fraction": None, "saturated_fraction": None}]}
    done = events[-1].data
    assert done["id"] == job_id and done["status"] == "succeeded"
    assert done["progress"] == {"epoch": 4, "epochs": 10}


def test_last_event_id_resumes_after_that_epoch(session_factory, owner, job_id):
    record(session_factory, job_id, [1, 2, 3, 4, 5])
    set_status(session_factory, job_id, "failed", error="diverged")
    events = run_feed(session_factory, owner, job_id, Script(), last_epoch=3)
    assert [(e.kind, e.id) for e in events] == [("status", 3), ("epoch", 4), ("epoch", 5),
                                                ("done", None)]
    assert events[0].data == {"status": "failed", "epoch": 5, "epochs": 10, "error": "diverged"}


def test_done_waits_until_every_epoch_is_sent_in_batches(session_factory, owner, job_id):
    record(session_factory, job_id, list(range(1, 451)))
    set_status(session_factory, job_id, "succeeded")
    script = Script()
    events = run_feed(session_factory, owner, job_id, script)
    assert [e.id for e in events if e.kind == "epoch"] == list(range(1, 451))
    assert events[-1].kind == "done"
    # Full batches are followed at once; only a short batch would wait for the next poll.
    assert script.sleeps == 0


def test_keepalive_after_silence_and_end_after_max_s(session_factory, owner, job_id):
    set_status(session_factory, job_id, "running")
    timing = FeedTiming(poll_s=1.0, keepalive_s=3.0, max_s=10.0)
    script = Script()
    events = run_feed(session_factory, owner, job_id, script, timing=timing)
    kinds = [e.kind for e in events]
    assert kinds[0] == "status" and "done" not in kinds
    assert kinds.count("ping") == 3  # at 3, 6 and 9 seconds of silence
    assert script.now == pytest.approx(10.0)


def test_other_users_job_yields_nothing(session_factory, user, session, job_id):
    mallory = user("mallory")
    session.commit()
    assert run_feed(session_factory, mallory.id, job_id, Script()) == []


def test_nonfinite_values_are_null_and_encoding_is_strict_json(session_factory, owner, job_id):
    record(session_factory, job_id, [1], loss=float("inf"))
    with session_factory() as s:
        (payload,) = epochs_after(s, job_id, 0)
    assert payload["train_loss"] is None
    text = Event("epoch", payload, 1).encode()
    assert text.startswith("event: epoch\nid: 1\ndata: {") and text.endswith("}\n\n")
    assert json.loads(text.split("data: ", 1)[1])["epoch"] == 1
    assert Event("ping").encode() == ": ping\n\n"
    with pytest.raises(ValueError):
        Event("epoch", {"x": float("nan")}, 1).encode()


def test_finishing_status_comes_after_the_last_epoch(session_factory, owner, job_id):
    f = session_factory
    set_status(f, job_id, "running")
    script = Script([lambda: (record(f, job_id, list(range(1, 301))),
                              set_status(f, job_id, "succeeded"))])
    events = run_feed(f, owner, job_id, script)
    assert [(e.kind, e.id) for e in events[:1] + events[-3:]] == [
        ("status", 0), ("epoch", 300), ("status", 300), ("done", None)]
    assert [e.kind for e in events].count("status") == 2
