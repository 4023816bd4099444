"""The reaper's loop inside each worker process (why a loop and not beat: jobs/reaper.py)."""
from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from jobs.db import session_scope
from jobs.db_retry import is_transient
from jobs.reaper import ReapResult, reap
from jobs.settings import Settings

log = logging.getLogger(__name__)


def reap_and_send(factory: sessionmaker[Session], settings: Settings,
                  send: Callable[[str], None]) -> ReapResult:
    """One pass: commit the reaper's changes, then ring the bell for each job.

    Sending after the commit means a worker that gets the message finds the job queued.
    If the send fails the job stays queued and a later pass re-sends it.
    """
    with session_scope(factory) as session:
        result = reap(session, settings)
    for job_id in result.to_send:
        send(job_id)
    if result.requeued or result.gave_up or result.cancelled or result.resent:
        log.warning("reaper: requeued %s, re-sent %s, gave up on %s, cancelled %s",
                    result.requeued, result.resent, result.gave_up, result.cancelled)
    return result


class ReaperLoop(threading.Thread):
    """Runs `reap_and_send` every `reaper_interval_s` (jittered) until stopped."""

    def __init__(self, factory: Callable[[], sessionmaker[Session]], settings: Settings,
                 send: Callable[[str], None]):
        super().__init__(name="gradtrace-reaper", daemon=True)
        self._factory, self._settings, self._send = factory, settings, send
        self._halt = threading.Event()

    def run(self) -> None:
        period = self._settings.reaper_interval_s
        # Jitter spreads the passes of many workers started together.
        while not self._halt.wait(period * random.uniform(0.8, 1.2)):
            try:
                reap_and_send(self._factory(), self._settings, self._send)
            except Exception as exc:  # an outage must not kill the loop
                if is_transient(exc):
                    log.warning("reaper pass failed (%s); next period", exc.__class__.__name__)
                else:
                    log.exception("reaper pass failed; trying again next period")

    def stop(self) -> None:
        self._halt.set()
