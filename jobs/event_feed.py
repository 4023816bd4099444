"""The database polling behind a job's live event stream (GET /v1/jobs/{id}/events).

Broker-agnostic on purpose: the worker already commits every epoch to the database, so
the stream polls for rows after the last epoch it sent and for the job's status. Each poll
is its own short transaction (a fresh session), so SQLite's WAL snapshot and PostgreSQL's
statement snapshot both see the newest commits, and no transaction stays open while the
client reads. No Flask here: `service/routes/events.py` only formats and sends.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from jobs.errors import NotFound
from jobs.job_views import job_detail
from jobs.layer_values import LAYER_BYTES, unpack
from jobs.metric_reader import EPOCH_COLUMNS
from jobs.metric_writer import LAYER_FIELDS, finite_or_none
from jobs.models import FINISHED_STATUSES, EpochMetric, Job
from jobs.submission import get_job

BATCH_EPOCHS = 200


@dataclass(frozen=True)
class Event:
    """One server-sent event; kind "ping" is the keep-alive comment."""

    kind: str
    data: dict | None = None
    id: int | None = None

    def encode(self) -> str:
        """The event in text/event-stream framing (JSON never carries NaN)."""
        if self.kind == "ping":
            return ": ping\n\n"
        lines = [f"event: {self.kind}"]
        if self.id is not None:
            lines.append(f"id: {self.id}")
        lines.append("data: " + json.dumps(self.data, allow_nan=False, separators=(",", ":")))
        return "\n".join(lines) + "\n\n"


@dataclass(frozen=True)
class FeedTiming:
    poll_s: float = 0.5
    keepalive_s: float = 15.0
    max_s: float = 3600.0



def status_payload(job: Job) -> dict:
    return {"status": job.status, "epoch": job.epoch, "epochs": job.epochs, "error": job.error}


def epochs_after(session: Session, job_id: str, after_epoch: int,
                 limit: int = BATCH_EPOCHS) -> list[dict]:
    """Up to `limit` recorded epochs after `after_epoch`, in order, with their layers.

    Plain column rows, not ORM objects: building thousands of mapped instances per
    second was most of the stream's cost (bench/event_stream.py).
    """
    rows = session.execute(
        select(EpochMetric.epoch, *[getattr(EpochMetric, c) for c in EPOCH_COLUMNS],
               EpochMetric.layers)
        .where(EpochMetric.job_id == job_id, EpochMetric.epoch > after_epoch)
        .order_by(EpochMetric.epoch).limit(limit)).all()
    if not rows:
        return []
    n_layers = max((len(blob) // LAYER_BYTES for *_, blob in rows if blob), default=0)
    layers = unpack([blob for *_, blob in rows], n_layers).tolist()
    return [{"epoch": epoch, **_finite(EPOCH_COLUMNS, values),
             "layers": [{"layer": i + 1, **_finite(LAYER_FIELDS, layer)}
                        for i, layer in enumerate(table)] if blob is not None else []}
            for (epoch, *values, blob), table in zip(rows, layers)]


def _finite(names: tuple[str, ...], values) -> dict:
    return {name: finite_or_none(value) for name, value in zip(names, values)}


@dataclass
class _Cursor:
    last_epoch: int
    status: tuple | None = None


def poll(session: Session, owner_id: str, job_id: str, cursor: _Cursor,
         limit: int = BATCH_EPOCHS) -> tuple[list[Event], bool]:
    """One poll: a status event if it changed, new epochs, and `done` once finished.

    The status is read before the epochs, so when it says "finished" every epoch the
    worker wrote had already been committed and is in this read. A finishing status is
    sent after the last epoch, right before `done`; any other change (and the status at
    connect) before the epochs. Returns (events, more): `more` says a full batch came
    back and the caller should poll again at once.
    """
    job = get_job(session, owner_id, job_id)
    status, finished = (job.status, job.error), job.status in FINISHED_STATUSES
    out: list[Event] = []
    if status != cursor.status and (cursor.status is None or not finished):
        cursor.status = status
        out.append(Event("status", status_payload(job), cursor.last_epoch))
    epochs = epochs_after(session, job_id, cursor.last_epoch, limit)
    for payload in epochs:
        cursor.last_epoch = payload["epoch"]
        out.append(Event("epoch", payload, payload["epoch"]))
    more = len(epochs) == limit
    if finished and not more:
        if status != cursor.status:
            cursor.status = status
            out.append(Event("status", status_payload(job), cursor.last_epoch))
        out.append(Event("done", job_detail(session, job)))
    return out, more


def follow(factory: sessionmaker[Session], owner_id: str, job_id: str, *,
           last_epoch: int = 0, timing: FeedTiming = FeedTiming(),
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Event]:
    """Events of one job until it is done, it disappears, or `timing.max_s` has passed."""
    cursor = _Cursor(last_epoch)
    started = last_output = clock()
    while clock() - started < timing.max_s:
        try:
            with factory() as session:
                events, more = poll(session, owner_id, job_id, cursor)
        except NotFound:
            return
        for event in events:
            yield event
            if event.kind == "done":
                return
        if events:
            last_output = clock()
        elif clock() - last_output >= timing.keepalive_s:
            yield Event("ping")
            last_output = clock()
        if not more:
            sleep(timing.poll_s)
