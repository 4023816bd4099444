"""A per-process copy of running jobs' metric columns that grows by the new epochs only.

A running job's stored metrics only ever grow at the end: a flush commits a contiguous
run of epochs after the previous one, its epoch rows and layer rows in one transaction
(jobs/metric_writer.py writes one flush at a time, in epoch order); a stored row is never
changed (a resumed run's re-computed epochs are skipped) and goes only with its job. So
once a process has read a job's columns up to epoch E, any later read needs only the
rows after E. Without this, every read of a running job's whole history fetched all of
its rows again: 1.1 s for 60,000 epochs of a 3-layer network on PostgreSQL, what each
dashboard opening on a long job asks for first.

The copy is numpy columns with room to grow (a MetricArchive's layout, so reads cut it
with the archive's own rule and encode it the same way). Bounded per process by
`max_bytes`, least recently read jobs dropped first, and idle ones after `idle_s`; a
finished job is read from its archive instead and its copy dropped.

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
from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.metric_archive import (EPOCH_COLUMNS, MetricArchive, archive_columns,
                                 columns_from_rows)
from jobs.metric_reader import driver_rows
from jobs.metric_writer import LAYER_FIELDS
from jobs.models import FINISHED_STATUSES, EpochMetric, Job, LayerMetric

# A read that would fetch fewer epochs than this from the rows does so, unless the job's
# copy exists already: a poll for what is new is one small indexed read either way.
MIN_EPOCHS = 1000
MAX_BYTES = 64 * 1024 * 1024
IDLE_S = 120.0


class _Copy:
    """One job's columns: the first `n` of arrays with room for `capacity` epochs."""

    def __init__(self, n_layers: int):
        self.lock = threading.Lock()  # one tail read at a time; the others wait for it
        self.n_layers, self.n, self.capacity = n_layers, 0, 0
        self.epoch = np.empty(0, np.int64)
        self.values = np.empty((len(EPOCH_COLUMNS), 0))
        self.layers = np.empty((n_layers, len(LAYER_FIELDS), 0))
        self.read_at = 0.0

    @property
    def last_epoch(self) -> int:
        return int(self.epoch[self.n - 1]) if self.n else 0

    @staticmethod
    def epoch_bytes(n_layers: int) -> int:
        return 8 * (1 + len(EPOCH_COLUMNS) + n_layers * len(LAYER_FIELDS))

    def nbytes(self, capacity: int | None = None) -> int:
        return self.epoch_bytes(self.n_layers) * (
            self.capacity if capacity is None else capacity)

    def capacity_for(self, epochs: int, limit: int) -> int:
        """The capacity that holds `epochs`: doubling (amortised appends), at most
        `limit` unless `epochs` needs more."""
        if epochs <= self.capacity:
            return self.capacity
        return max(epochs, min(max(2 * self.capacity, 1024), limit))

    def view(self) -> MetricArchive:
        """The filled part. Appends write past it and growth copies to new arrays, so a
        view stays valid while other threads extend the copy."""
        n = self.n
        return MetricArchive(self.epoch[:n], {c: self.values[i, :n]
                                              for i, c in enumerate(EPOCH_COLUMNS)},
                             self.layers[:, :, :n])

    def append(self, tail: MetricArchive, capacity: int) -> None:
        n, k = self.n, len(tail.epoch)
        if capacity > self.capacity:
            self._grow(capacity)
        self.epoch[n:n + k] = tail.epoch
        for i, c in enumerate(EPOCH_COLUMNS):
            self.values[i, n:n + k] = tail.columns[c]
        self.layers[:, :, n:n + k] = tail.layers
        self.n = n + k

    def _grow(self, capacity: int) -> None:
        n = self.n
        epoch = np.empty(capacity, np.int64)
        values = np.empty((len(EPOCH_COLUMNS), capacity))
        layers = np.empty((self.n_layers, len(LAYER_FIELDS), capacity))
        epoch[:n], values[:, :n], layers[:, :, :n] = self.epoch[:n], self.values[:, :n], \
            self.layers[:, :, :n]
        self.epoch, self.values, self.layers, self.capacity = epoch, values, layers, capacity


class RunningColumns:
    """Running jobs' columns by job id, in this process (shared by its threads)."""

    def __init__(self, max_bytes: int = MAX_BYTES, idle_s: float = IDLE_S,
                 clock: Callable[[], float] = time.monotonic, min_epochs: int = MIN_EPOCHS):
        self.max_bytes, self.idle_s, self.min_epochs = max_bytes, idle_s, min_epochs
        self._clock = clock
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
        to be the caller's); None when its rows should be read instead (a finished job,
        a short read with no copy yet, a history too big to keep, or rows that are not
        one per epoch and layer)."""
        copy = self._copy_for(job, since_epoch)
        if copy is None:
            return None
        with copy.lock:
            tail = self._tail(session, job, copy.last_epoch, copy.n_layers)
            limit = self.max_bytes // copy.epoch_bytes(copy.n_layers)
            if tail is None or copy.n + len(tail.epoch) > limit:
                self.forget(job.id)
                return None
            if len(tail.epoch):
                capacity = copy.capacity_for(copy.n + len(tail.epoch), limit)
                self._make_room(copy, capacity)
                copy.append(tail, capacity)
            view = copy.view()
        return archive_columns(view, job, since_epoch, max_points)

    def forget(self, job_id: str) -> None:
        with self._lock:
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
                if not self._worth_keeping(job, since_epoch):
                    return None
                copy = self._copies[job.id] = _Copy(len(job.spec["network"]["layers"]))
            self._copies.move_to_end(job.id)
            copy.read_at = now
            for job_id in [j for j, c in self._copies.items() if now - c.read_at > self.idle_s]:
                del self._copies[job_id]
            return copy

    def _worth_keeping(self, job: Job, since_epoch: int) -> bool:
        """A read of many epochs, of a history that fits (the job's progress bounds the
        number of recorded epochs)."""
        stored = (job.epoch or 0) // job.spec.get("record", {}).get("every_epochs", 1) + 1
        per_epoch = _Copy.epoch_bytes(len(job.spec["network"]["layers"]))
        return ((job.epoch or 0) - since_epoch >= self.min_epochs
                and stored * per_epoch <= self.max_bytes)

    def _make_room(self, copy: _Copy, capacity: int) -> None:
        """Drop the least recently read other copies until this one fits at `capacity`."""
        with self._lock:
            others = sum(c.nbytes() for c in self._copies.values() if c is not copy)
            for job_id in list(self._copies):
                if others + copy.nbytes(capacity) <= self.max_bytes:
                    break
                if self._copies[job_id] is not copy:
                    others -= self._copies.pop(job_id).nbytes()

    @staticmethod
    def _tail(session: Session, job: Job, after: int, n_layers: int) -> MetricArchive | None:
        """The epochs stored after `after`, with their layers; None if any epoch lacks a
        layer row. The layer rows are bounded by the last epoch row read: they were
        committed with it, so a second statement sees all of them (and perhaps more)."""
        epoch_rows = driver_rows(session, select(EpochMetric.epoch,
                                                 *[getattr(EpochMetric, c) for c in EPOCH_COLUMNS])
                                 .where(EpochMetric.job_id == job.id, EpochMetric.epoch > after)
                                 .order_by(EpochMetric.epoch))
        last = epoch_rows[-1][0] if epoch_rows else after
        layer_rows = driver_rows(session, select(LayerMetric.epoch, LayerMetric.layer,
                                                 *[getattr(LayerMetric, f) for f in LAYER_FIELDS])
                                 .where(LayerMetric.job_id == job.id, LayerMetric.epoch > after,
                                        LayerMetric.epoch <= last)
                                 .order_by(LayerMetric.epoch, LayerMetric.layer))
        return columns_from_rows(epoch_rows, layer_rows, n_layers)
