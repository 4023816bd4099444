"""Retrying a worker's database write through a dropped connection or a restart.

A worker must not lose an epoch because PostgreSQL dropped its connection: the write is
retried with exponential backoff until it succeeds or the caller says to give up (the
lease is gone, so the write would be refused anyway). Every retried write is idempotent
(fenced UPDATEs, inserts that ignore duplicates), so a commit that succeeded on the
server but whose reply was lost is harmless to repeat.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from jobs.lease import LeaseLost

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0


def is_transient(exc: BaseException) -> bool:
    """A lost connection, a server restart, a locked SQLite file: worth retrying."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class Backoff:
    """Doubling delays between FIRST_BACKOFF_S and MAX_BACKOFF_S, reset on success."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock, self._delay, self.next_try = clock, FIRST_BACKOFF_S, 0.0

    def ready(self) -> bool:
        return self._clock() >= self.next_try

    def failed(self) -> float:
        wait = self._delay
        self.next_try = self._clock() + wait
        self._delay = min(self._delay * 2, MAX_BACKOFF_S)
        return wait

    def succeeded(self) -> None:
        self._delay, self.next_try = FIRST_BACKOFF_S, 0.0


def retry_db(action: Callable[[], T], *, lease_lost: Callable[[], bool], what: str,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `action` until it succeeds. A non-transient error is re-raised; once
    `lease_lost()` (the heartbeat gave up: another worker may own the job) LeaseLost is."""
    backoff = Backoff()
    while True:
        try:
            return action()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if lease_lost():
                raise LeaseLost(what) from exc
            wait = backoff.failed()
            log.warning("%s failed (%s); retrying in %.2f s", what, exc.__class__.__name__, wait)
            sleep(wait)
