"""A per-process cache of polled answers: one job, and its metrics since an epoch.

Clients and dashboards poll GET /v1/jobs/{id} and .../metrics?since_epoch=... several
times a second between them, while what those answers show changes at most once per
metric flush (`metrics_flush_seconds`, 0.25 s). Each API process keeps the body it
computed, with the job row's version (`jobs.submission.job_version`: `updated_at`, status
and progress, which every write to the job, and every metric flush, changes). A poll then
costs one indexed look-up of those three columns instead of the job, its diagnosis or
its metric rows and their encoding: the answer is served again only while the version is
unchanged, so it is never staler than the database.

- Keys hold the user's id, and the look-up filters by owner: an answer is only ever
  served to the user it was computed for, after their token and rate limit were checked.
- What changes without touching the job row (a dataset or sweep deleted, whose id the job
  then shows as null) shows after at most `poll_cache_seconds`, or at once to a user whose
  write went through this process (a successful non-GET /v1 request drops their entries).
- Only 200 answers up to `MAX_ENTRY_BYTES` are kept, within `MAX_TOTAL_BYTES` per process.

Imports Flask, SQLAlchemy (for a type), `jobs` and `service` modules and the standard
library only.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Flask, Response, current_app, g, request
from sqlalchemy.orm import Session

from jobs.models import Job
from jobs.submission import get_job, job_version, version_of
from service.session import autocommit_connection, db

EXTENSION = "gradtrace_poll_cache"
MAX_ENTRY_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024
READS = frozenset({"GET", "HEAD", "OPTIONS"})


class PollCache:
    """Bodies by (user id, path with query), each tagged with the job version it showed
    and kept at most ``max_age`` seconds."""

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic):
        self.max_age, self._clock = max_age, clock
        self._entries: dict[tuple[str, str], tuple[float, tuple, bytes, str]] = {}
        self._bytes = 0
        self._lock = threading.Lock()  # gunicorn's threads share one process's cache

    def holds(self, key: tuple[str, str]) -> bool:
        """Whether an entry for ``key`` is young enough to be validated."""
        entry = self._entries.get(key)
        return entry is not None and entry[0] > self._clock()

    def get(self, key: tuple[str, str], version: tuple) -> tuple[bytes, str] | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock() or entry[1] != version:
            return None
        return entry[2], entry[3]

    def put(self, key: tuple[str, str], version: tuple, body: bytes, mimetype: str) -> None:
        if len(body) > MAX_ENTRY_BYTES:
            return
        with self._lock:
            self._discard(key)
            if self._bytes + len(body) > MAX_TOTAL_BYTES:
                self._evict_expired()
                if self._bytes + len(body) > MAX_TOTAL_BYTES:
                    self._entries.clear()
                    self._bytes = 0
            self._entries[key] = (self._clock() + self.max_age, version, body, mimetype)
            self._bytes += len(body)

    def drop_user(self, user_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == user_id]:
                self._discard(key)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _evict_expired(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._entries.items() if e[0] <= now]:
            self._discard(key)

    def _discard(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[2])


def init_poll_cache(app: Flask) -> None:
    """Register the cache; call after the authentication hook so `g.user` is known."""
    max_age = app.config["GRADTRACE"].poll_cache_seconds
    app.extensions[EXTENSION] = PollCache(max_age) if max_age > 0 else None
    app.after_request(_drop_after_write)


def polled(job_id: str, view: Callable[[Session, Job], object]) -> Response:
    """Answer a polled read about the user's job ``job_id``: from the cache while the job
    is unchanged, else ``view(session, job)`` (a view's return value), kept for next time.

    The version is looked up on its own only when there is an entry to validate; a first
    poll of a path loads the job once and takes the version from it.
    """
    cache: PollCache | None = current_app.extensions[EXTENSION]
    key = (g.user.id, request.full_path)
    if cache is not None and cache.holds(key):
        with autocommit_connection() as conn:
            version = job_version(conn, g.user.id, job_id)
        hit = cache.get(key, version) if version is not None else None
        if hit is not None:
            return Response(hit[0], mimetype=hit[1])
    session = db()
    job = get_job(session, g.user.id, job_id)  # 404 for anyone else's job
    version = version_of(job)  # before the view, which may commit (and expire the row)
    response = current_app.make_response(view(session, job))
    if cache is not None and response.status_code == 200 and not response.is_streamed:
        cache.put(key, version, response.get_data(), response.mimetype)
    return response


def _drop_after_write(response: Response) -> Response:
    cache: PollCache | None = current_app.extensions[EXTENSION]
    user = g.get("user")
    if (cache is not None and user is not None and request.method not in READS
            and response.status_code < 400):
        cache.drop_user(user.id)
    return response
