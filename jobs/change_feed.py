"""Job-row changes as they commit, from PostgreSQL's LISTEN/NOTIFY.

A trigger on `jobs` (jobs/models.py, JOB_CHANGE_NOTIFY) sends a job's id on
`JOB_CHANGED_CHANNEL` when a transaction that updated or deleted its row commits. A
`JobChangeFeed` is one thread with one connection listening there; it hands each id to
`on_change`. A cache may trust what it stored while the feed is `live` and its
`generation` has not moved since it last checked the stored value against the database:

- the generation moves at every (re)connection, once LISTEN is in place: changes while no
  connection listened are lost, so whatever was confirmed before must be checked again;
- `live` is False from the moment the connection fails until it is listening again, and
  as soon as the last successful probe (every `probe_s` seconds) is older than
  `STALE_PROBES` probes: a connection that hangs without failing (a network that drops
  packets, a frozen proxy) is distrusted within about 3 s, before TCP would notice;
  TCP keepalives then break it and the feed reconnects.
- Generations are unique in the process and after a fork (a module-wide counter), so an
  answer trusted under one feed is never taken as trusted under another.

Needs a session-level connection: behind PgBouncer in transaction pooling, LISTEN
succeeds but nothing is delivered (point `database_url` at PostgreSQL, or a session pool).

Notifications arrive after the commit, over a socket, and are handled when this thread
next runs: another process's write shows in a cache a few milliseconds after it commits.

Imports psycopg, SQLAlchemy (to read the URL), `jobs.models` and the standard library.
"""
from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import weakref

import psycopg
from sqlalchemy.engine import make_url

from jobs.models import JOB_CHANGED_CHANNEL

log = logging.getLogger(__name__)
MAX_RETRY_S = 30.0
STALE_PROBES = 3
# libpq TCP keepalives: a connection that stops answering errors out within ~20 s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 3, "tcp_user_timeout": 15_000}
_generations = itertools.count(1)
APPLICATION_NAME = "gradtrace-job-feed"  # what pg_stat_activity shows for its connection


def libpq_dsn(database_url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as psycopg's own connection string."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(
        hide_password=False)


class JobChangeFeed(threading.Thread):
    """Calls `owner.job_changed(job_id)` for every committed change of a job row while
    `live`. Holds `owner` weakly, and stops once it is gone (an app that was dropped)."""

    def __init__(self, database_url: str, owner, *, probe_s: float = 1.0):
        super().__init__(name="job-change-feed", daemon=True)
        self._dsn, self._probe_s = libpq_dsn(database_url), probe_s
        self._owner = weakref.ref(owner)
        self._stopping = threading.Event()
        self.generation = 0
        self._last_ok = -math.inf  # the last successful probe of a listening connection

    @property
    def live(self) -> bool:
        """Listening, with a successful probe within the last STALE_PROBES probes."""
        return time.monotonic() - self._last_ok < STALE_PROBES * self._probe_s

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        wait = self._probe_s
        while not self._stopped():
            listened = self.generation
            try:
                self._listen()
            except psycopg.Error as exc:
                log.warning("job change feed: %s; polls check the database until it is back",
                            exc.__class__.__name__)
            except Exception:  # noqa: BLE001 - a bug must not end the feed for the process
                log.exception("job change feed failed; polls check the database meanwhile")
            finally:
                self._last_ok = -math.inf
            if self.generation != listened:  # it was listening: the back-off starts afresh
                wait = self._probe_s
            self._stopping.wait(wait)
            wait = min(MAX_RETRY_S, wait * 2)

    def _stopped(self) -> bool:
        return self._stopping.is_set() or self._owner() is None

    def _listen(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5,
                             application_name=APPLICATION_NAME, **KEEPALIVES) as conn:
            conn.execute(f"LISTEN {JOB_CHANGED_CHANNEL}")
            self.generation = next(_generations)
            self._last_ok = time.monotonic()
            while not self._stopped():
                for note in conn.notifies(timeout=self._probe_s):
                    owner = self._owner()
                    if owner is not None:
                        owner.job_changed(note.payload)
                conn.execute("SELECT 1")  # a dead connection raises here
                self._last_ok = time.monotonic()

