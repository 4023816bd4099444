"""A per-process copy of running jobs' metric columns, read from the database once.

A running job's stored metrics only ever grow at the end: a flush commits a contiguous
run of epochs after the previous one, in one transaction with the job's progress
(jobs/metric_writer.py writes one flush at a time, in epoch order); a stored row is
never changed (a resumed run's re-computed epochs are skipped) and goes only with its
job. So a process keeps each polled running job's columns for a range of epochs
(first, last] and reads from the database only

- the epochs after `last`, and only when the job's progress has moved since it last
  looked (a poll of a job between two flushes reads no metric rows at all); and
- the epochs between a read's `since_epoch` and `first`, once, when a read asks for
  older epochs than any before it (a dashboard opening on a long job).

Without this, every poll read its epochs from the rows, and a read of a running job's
whole history fetched all of them again: 1.1 s for 60,000 epochs of a 3-layer network
on PostgreSQL, what each dashboard opening on a long job asks for first.

The copy is numpy columns with room to grow (a MetricArchive's layout, so reads cut it
with the archive's own rule and encode it the same way). Bounded per process by
`max_bytes`, least recently read jobs dropped first, and idle ones after `idle_s`; a
finished job is read from its archive instead and its copy dropped.

This needs each statement to see what was committed before it ran (PostgreSQL's default
READ COMMITTED; SQLite's reads): under REPEATABLE READ a thread with an old snapshot
could read (since, first] without epochs committed after its snapshot, a lasting gap.

Imports numpy, SQLAlchemy, `jobs` modules and the standard library only.
"""
from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from jobs.metric_archive import (EPOCH_COLUMNS, MetricArchive, archive_columns,
                                 columns_from_rows)
from jobs.metric_reader import Prepared
from jobs.metric_writer import LAYER_FIELDS
from jobs.models import FINISHED_STATUSES, EpochMetric, Job

MAX_BYTES = 64 * 1024 * 1024
IDLE_S = 120.0
NO_END = 2**31 - 1  # `epoch` is a 32-bit integer column

_EPOCHS = Prepared(select(EpochMetric.epoch, *[getattr(EpochMetric, c) for c in EPOCH_COLUMNS],
                          EpochMetric.layers)
                   .where(EpochMetric.job_id == bindparam("job_id"),
                          EpochMetric.epoch > bindparam("after"),
                          EpochMetric.epoch <= bindparam("upto"))
                   .order_by(EpochMetric.epoch))


def epoch_bytes(n_layers: int) -> int:
    """What one epoch of a copy holds: its number, the epoch columns, each layer's."""
    return 8 * (1 + len(EPOCH_COLUMNS) + n_layers * len(LAYER_FIELDS))


class _Copy:
    """One job's recorded epochs in (first, last]: the first `n` of arrays with room for
    `capacity` epochs. `progress` is the job's progress when the copy last read the rows
    after `last`: every epoch up to it is here."""

    def __init__(self, n_layers: int, first: int):
        self.lock = threading.Lock()  # one database read at a time; the others wait for it
        self.n_layers, self.n, self.capacity = n_layers, 0, 0
        self.reserved = 0  # capacity it is about to grow to, counted against the bound
        self.first = self.last = first
        self.progress = -1
        self.epoch = np.empty(0, np.int64)
        self.values = np.empty((len(EPOCH_COLUMNS), 0))
        self.layers = np.empty((n_layers, len(LAYER_FIELDS), 0))
        self.read_at = 0.0

    def nbytes(self, capacity: int | None = None) -> int:
        if capacity is None:
            capacity = max(self.capacity, self.reserved)
        return epoch_bytes(self.n_layers) * capacity

    def capacity_for(self, epochs: int, limit: int) -> int:
        """The capacity that holds `epochs`: doubling (amortised appends), at most
        `limit` unless `epochs` needs more."""
        if epochs <= self.capacity:
            return self.capacity
        return max(epochs, min(max(2 * self.capacity, 1024), limit))

    def view(self) -> MetricArchive:
        """The filled part. Appends write past it and growth or a prepend copies to new
        arrays, so a view stays valid while other threads extend the copy."""
        n = self.n
        return MetricArchive(self.epoch[:n], {c: self.values[i, :n]
                                              for i, c in enumerate(EPOCH_COLUMNS)},
                             self.layers[:, :, :n])

    def append(self, tail: MetricArchive, capacity: int) -> None:
        n, k = self.n, len(tail.epoch)
        if capacity > self.capacity:
            self._move(capacity, 0)
        self._put(n, tail)
        self.n = n + k

    def prepend(self, head: MetricArchive, capacity: int) -> None:
        k = len(head.epoch)
        self._move(max(capacity, self.capacity), k)
        self._put(0, head)
        self.n += k

    def _put(self, at: int, part: MetricArchive) -> None:
        k = len(part.epoch)
        self.epoch[at:at + k] = part.epoch
        for i, c in enumerate(EPOCH_COLUMNS):
            self.values[i, at:at + k] = part.columns[c]
        self.layers[:, :, at:at + k] = part.layers

    def _move(self, capacity: int, offset: int) -> None:
        """Into new arrays of `capacity` epochs, the filled part starting at `offset`."""
        n, end = self.n, offset + self.n
        epoch = np.empty(capacity, np.int64)
        values = np.empty((len(EPOCH_COLUMNS), capacity))
        layers = np.empty((self.n_layers, len(LAYER_FIELDS), capacity))
        epoch[offset:end] = self.epoch[:n]
        values[:, offset:end] = self.values[:, :n]
        layers[:, :, offset:end] = self.layers[:, :, :n]
        self.epoch, self.values, self.layers, self.capacity = epoch, values, layers, capacity


class RunningColumns:
    """Running jobs' columns by job id, in this process (shared by its threads)."""

    def __init__(self, max_bytes: int = MAX_BYTES, idle_s: float = IDLE_S,
                 clock: Callable[[], float] = time.monotonic):
        self.max_bytes, self.idle_s, self._clock = max_bytes, idle_s, clock
        self._copies: OrderedDict[str, _Copy] = OrderedDict()  # least recently read first
        self._lock = threading.Lock()
        # A forked child (gunicorn --preload) starts empty: a lock held by a thread of
        # the parent would never be released in the child.
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (kept := me()) and kept._forked())

    def _forked(self) -> None:
        self._copies, self._lock = OrderedDict(), threading.Lock()

    def read(self, session: Session, job: Job, since_epoch: int = 0,
             max_points: int | None = None) -> dict | None:
        """read_metrics' columns, as numpy arrays, of the running `job` (already checked
        to be the caller's, and loaded in this transaction); None when its rows should be
        read instead (a finished job, a history too big to keep, or rows that do not each
        hold every layer)."""
        copy = self._copy_for(job, since_epoch)
        if copy is None:
            return None
        with copy.lock:
            if not self._extend(session, job, copy, since_epoch):
                self.forget(job.id, copy)
                return None
            view = copy.view()
        return archive_columns(view, job, since_epoch, max_points)

    def forget(self, job_id: str, copy: _Copy | None = None) -> None:
        """Drop the job's copy (only if it is still `copy`, when given)."""
        with self._lock:
            if copy is None or self._copies.get(job_id) is copy:
                self._copies.pop(job_id, None)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(c.nbytes() for c in self._copies.values())

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._copies

    def _copy_for(self, job: Job, since_epoch: int) -> _Copy | None:
        if job.status in FINISHED_STATUSES:
            self.forget(job.id)
            return None
        now = self._clock()
        with self._lock:
            copy = self._copies.get(job.id)
            if copy is None:
                n_layers = len(job.spec["network"]["layers"])
                every = job.spec.get("record", {}).get("every_epochs", 1)
                if ((job.epoch or 0) // every + 1) * epoch_bytes(n_layers) > self.max_bytes:
                    return None  # its progress says the history cannot fit
                # Idle copies go when a new one comes (the only time memory grows
                # without a read of theirs), not on every poll.
                for job_id in [j for j, c in self._copies.items()
                               if now - c.read_at > self.idle_s]:
                    del self._copies[job_id]
                # Every epoch up to the job's progress is stored, so a copy may start there.
                copy = self._copies[job.id] = _Copy(n_layers, min(since_epoch, job.epoch or 0))
            self._copies.move_to_end(job.id)
            copy.read_at = now
            return copy

    def _extend(self, session: Session, job: Job, copy: _Copy, since_epoch: int) -> bool:
        """Read what the copy lacks for this read; False if it cannot be kept."""
        limit = self.max_bytes // epoch_bytes(copy.n_layers)
        if since_epoch < copy.first:
            head = self._rows(session, job, copy.n_layers, since_epoch, copy.first)
            if head is None or copy.n + len(head.epoch) > limit:
                return False
            capacity = copy.capacity_for(copy.n + len(head.epoch), limit)
            self._make_room(job.id, copy, capacity)
            copy.prepend(head, capacity)
            copy.first = since_epoch
        progress = job.epoch or 0  # loaded before this read: rows up to it are committed
        if progress > copy.progress:
            tail = self._rows(session, job, copy.n_layers, copy.last, NO_END)
            if tail is None or copy.n + len(tail.epoch) > limit:
                return False
            if len(tail.epoch):
                capacity = copy.capacity_for(copy.n + len(tail.epoch), limit)
                self._make_room(job.id, copy, capacity)
                copy.append(tail, capacity)
                copy.last = int(tail.epoch[-1])
            copy.progress = progress
        return True

    def _make_room(self, job_id: str, copy: _Copy, capacity: int) -> None:
        """Reserve `capacity` for the copy, dropping the least recently read other copies
        until all fit; reservations count at once, so two copies growing together cannot
        both take the same room. A copy dropped meanwhile (evicted while this read held
        it) takes no room from others: it lives only until this read ends."""
        with self._lock:
            if self._copies.get(job_id) is not copy:
                return
            copy.reserved = capacity
            others = sum(c.nbytes() for c in self._copies.values() if c is not copy)
            for other in list(self._copies):
                if others + copy.nbytes() <= self.max_bytes:
                    break
                if self._copies[other] is not copy:
                    others -= self._copies.pop(other).nbytes()

    @staticmethod
    def _rows(session: Session, job: Job, n_layers: int, after: int,
              upto: int) -> MetricArchive | None:
        """The stored epochs in (after, upto], with their layers; None if any epoch lacks
        a layer's values."""
        return columns_from_rows(_EPOCHS.rows(session, job_id=job.id, after=after, upto=upto),
                                 n_layers)
