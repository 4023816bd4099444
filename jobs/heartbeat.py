"""A background thread that renews a job's lease and relays cancellation.

Training polls `should_stop()` before every batch; that poll must cost nanoseconds, so
it only reads flags this thread sets. If the lease is taken over, or the database stays
unreachable until the lease would have expired, the worker stops itself: another
worker may already be running the job.
"""
from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from jobs.db import session_scope
from jobs.lease import Lease, renew

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, factory: sessionmaker[Session], lease: Lease, *, ttl_s: float,
                 every_s: float):
        super().__init__(name=f"heartbeat-{lease.job_id}", daemon=True)
        self._factory, self._lease, self._ttl, self._every = factory, lease, ttl_s, every_s
        self._done = threading.Event()
        self.cancel_requested = False
        self.lost = False

    def run(self) -> None:
        last_ok = time.monotonic()
        # Once lost, the lease is gone for good: beating on would only load the database.
        while not self.lost and not self._done.wait(self._every):
            try:
                with session_scope(self._factory) as session:
                    cancel = renew(session, self._lease, ttl_s=self._ttl)
            except SQLAlchemyError as exc:
                log.warning("lease renewal failed for %s: %s", self._lease.job_id, exc)
                # Margin of one beat: stop before the lease can expire under us.
                if time.monotonic() - last_ok > self._ttl - self._every:
                    self.lost = True
                continue
            last_ok = time.monotonic()
            if cancel is None:
                self.lost = True
            elif cancel:
                self.cancel_requested = True

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=self._every + 5)
