"""A per-process cache of polled answers: one job, and its metrics since an epoch.

Clients and dashboards poll GET /v1/jobs/{id} and .../metrics?since_epoch=... several
times a second between them, while what those answers show changes at most once per
metric flush (`metrics_flush_seconds`, 0.5 s). Each API process keeps the body it
computed, with the job row's version (`jobs.submission.job_version`: `updated_at`, status
and progress, which every write to the job, and every metric flush, changes), and serves
it again while the job is unchanged:

- On PostgreSQL the process listens for job-row changes (jobs/change_feed.py). An entry
  is checked against the job's version once (one indexed look-up); after that, and until
  a change of the job arrives, it is served with no database work at all. A write
  through another process shows once its notification arrives, milliseconds after its
  commit; through this process, at once.
- While the feed is down (and on SQLite, a single process) every poll checks the
  version: one look-up instead of the job, its diagnosis or its metric rows.

- Keys hold the user's id, and the look-up filters by owner: an answer is only ever
  served to the user it was computed for, after their token and rate limit were checked.
- What changes without touching the job row (a dataset or sweep deleted, whose id the job
  then shows as null) shows after at most `poll_cache_seconds`, or at once to a user whose
  write went through this process (a successful non-GET /v1 request drops their entries).
  That age bound also caps what a listening connection that hangs could hide before the
  feed stops vouching for it (jobs/change_feed.py: within three probes, about 3 s).
- Only 200 answers up to `MAX_ENTRY_BYTES` are kept, within `MAX_TOTAL_BYTES` per process.
- Polls of one path by one user that arrive while its answer is being computed in this
  process wait for that answer, whatever its size, rather than compute it again: they
  get the job as it was when the first of them read it.

Imports Flask, SQLAlchemy (for a type), `jobs` and `service` modules and the standard
library only.
"""
from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable

from flask import Flask, Response, current_app, g, request
from sqlalchemy.orm import Session

from jobs.change_feed import JobChangeFeed
from jobs.models import Job
from jobs.submission import get_job, job_version, version_of
from service.session import autocommit_connection, db

EXTENSION = "gradtrace_poll_cache"
MAX_ENTRY_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024
READS = frozenset({"GET", "HEAD", "OPTIONS"})
FLIGHT_WAIT_S = 30.0  # a poll waits this long for the same answer computed by another thread

Key = tuple[str, str]  # (user id, path with query)


class Entry:
    """One kept answer. `trusted` is the feed generation in which it was last found to
    match the database (0: never), so it needs no check while that generation lasts."""

    __slots__ = ("expires", "job_id", "version", "body", "mimetype", "trusted")

    def __init__(self, expires: float, job_id: str, version: tuple, body: bytes, mimetype: str):
        self.expires, self.job_id, self.version = expires, job_id, version
        self.body, self.mimetype, self.trusted = body, mimetype, 0


class Flight:
    """One answer being computed; the polls that asked for it meanwhile wait for it."""

    __slots__ = ("landed", "body", "mimetype")

    def __init__(self):
        self.landed = threading.Event()
        self.body: bytes | None = None  # None: no answer to share (an error, a stream)
        self.mimetype = ""


class PollCache:
    """Answers by (user id, path with query), each kept at most ``max_age`` seconds and
    dropped as soon as the feed (when there is one) reports a change of its job."""

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic,
                 feed_url: str | None = None):
        self.max_age, self._clock, self._feed_url = max_age, clock, feed_url
        self._entries: dict[Key, Entry] = {}
        self._by_job: dict[str, set[Key]] = {}
        self._flights: dict[Key, Flight] = {}
        self._bytes = 0
        self._lock = threading.Lock()  # gunicorn's threads share one process's cache
        self.feed: JobChangeFeed | None = None
        # A forked child (gunicorn --preload) starts empty: what the parent kept and
        # trusted was under the parent's feed, and its lock may be held by a thread
        # that does not exist in the child.
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (cache := me()) and cache._forked())

    def listening(self) -> int:
        """The live feed's generation, 0 when there is none; starts this process's feed on
        first use (gunicorn forks its workers; a thread does not survive a fork), and
        again if its thread ended."""
        if self._feed_url is None:
            return 0
        feed = self.feed
        if feed is None or not feed.is_alive():
            with self._lock:
                if self.feed is feed:
                    self.feed = feed = JobChangeFeed(self._feed_url, self)
                    feed.start()
                feed = self.feed
        return feed.generation if feed.live else 0

    def _forked(self) -> None:
        self._lock = threading.Lock()
        self._entries, self._by_job, self._flights, self._bytes = {}, {}, {}, 0
        self.feed = None

    def young(self, key: Key) -> Entry | None:
        """The entry for ``key`` if it is young enough to be served or checked."""
        entry = self._entries.get(key)
        return entry if entry is not None and entry.expires > self._clock() else None

    def trust(self, key: Key, entry: Entry, generation: int) -> None:
        """Mark ``entry``, just found to match the database, as needing no further check
        while the feed stays in ``generation``. A change of its job that arrived meanwhile
        has already dropped it, and then nothing happens."""
        feed = self.feed
        with self._lock:
            if (generation and feed is not None and feed.live and feed.generation == generation
                    and self._entries.get(key) is entry):
                entry.trusted = generation

    def put(self, key: Key, job_id: str, version: tuple, body: bytes, mimetype: str) -> None:
        with self._lock:
            self._discard(key)
            if len(body) > MAX_ENTRY_BYTES:
                return
            if self._bytes + len(body) > MAX_TOTAL_BYTES:
                self._evict_expired()
                if self._bytes + len(body) > MAX_TOTAL_BYTES:
                    self._entries.clear()
                    self._by_job.clear()
                    self._bytes = 0
            self._entries[key] = Entry(self._clock() + self.max_age, job_id, version, body,
                                       mimetype)
            self._by_job.setdefault(job_id, set()).add(key)
            self._bytes += len(body)

    def board(self, key: Key) -> tuple[Flight, bool]:
        """The flight computing ``key``'s answer, and whether the caller must compute it
        (it is the first to ask) or may wait for it."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = Flight()
            return flight, True

    def land(self, key: Key, flight: Flight, body: bytes | None, mimetype: str) -> None:
        """The first asker is done: share its answer (None: none to share), release."""
        with self._lock:
            self._flights.pop(key, None)
        flight.body, flight.mimetype = body, mimetype
        flight.landed.set()

    def job_changed(self, job_id: str) -> None:
        """The feed's callback: the job's row changed, so its answers may have."""
        with self._lock:
            for key in list(self._by_job.get(job_id, ())):
                self._discard(key)

    def drop_user(self, user_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == user_id]:
                self._discard(key)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _evict_expired(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._entries.items() if e.expires <= now]:
            self._discard(key)

    def _discard(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= len(entry.body)
        keys = self._by_job.get(entry.job_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_job[entry.job_id]


def init_poll_cache(app: Flask) -> None:
    """Register the cache; call after the authentication hook so `g.user` is known."""
    settings = app.config["GRADTRACE"]
    feed_url = settings.database_url if settings.on_postgres else None
    app.extensions[EXTENSION] = (PollCache(settings.poll_cache_seconds, feed_url=feed_url)
                                 if settings.poll_cache_seconds > 0 else None)
    app.after_request(_drop_after_write)


def polled(job_id: str, view: Callable[[Session, Job], object]) -> Response:
    """Answer a polled read about the user's job ``job_id``: from the cache while the job
    is unchanged, else ``view(session, job)`` (a view's return value), kept for next time.

    A first poll of a path loads the job once and takes the version from it; the version
    is looked up on its own only to check an entry the feed does not vouch for. Polls of
    the same path by the same user that arrive while it is being computed in this process
    wait for that answer (dashboards opening on a long job all ask for its whole history
    at once; each would otherwise read and encode it).
    """
    cache: PollCache | None = current_app.extensions[EXTENSION]
    if cache is None:
        return _compute(job_id, view)[0]
    key = (g.user.id, request.full_path)
    entry = cache.young(key)
    if entry is not None:
        generation = cache.listening()
        if generation and entry.trusted == generation:
            return Response(entry.body, mimetype=entry.mimetype)
        with autocommit_connection() as conn:
            version = job_version(conn, g.user.id, job_id)
        if version == entry.version:
            cache.trust(key, entry, generation)
            return Response(entry.body, mimetype=entry.mimetype)
    flight, leading = cache.board(key)
    if not leading:
        if flight.landed.wait(FLIGHT_WAIT_S) and flight.body is not None:
            return Response(flight.body, mimetype=flight.mimetype)
        return _compute(job_id, view)[0]  # the first one failed or took too long
    body, mimetype = None, ""  # shared and kept only if the answer is a whole 200
    try:
        response, version = _compute(job_id, view)
        if response.status_code == 200 and not response.is_streamed:
            body, mimetype = response.get_data(), response.mimetype
            cache.listening()  # the feed runs from a process's first poll on
            cache.put(key, job_id, version, body, mimetype)
    finally:
        cache.land(key, flight, body, mimetype)
    return response


def _compute(job_id: str, view: Callable[[Session, Job], object]) -> tuple[Response, tuple]:
    """The view's answer, and the job's version it shows."""
    session = db()
    job = get_job(session, g.user.id, job_id)  # 404 for anyone else's job
    version = version_of(job)  # before the view, which may commit (and expire the row)
    return current_app.make_response(view(session, job)), version


def _drop_after_write(response: Response) -> Response:
    cache: PollCache | None = current_app.extensions[EXTENSION]
    user = g.get("user")
    if (cache is not None and user is not None and request.method not in READS
            and response.status_code < 400):
        cache.drop_user(user.id)
    return response
