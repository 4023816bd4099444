"""Counting a busy user's requests in the shared store a few at a time.

One Redis round trip per request was a quarter of a cached poll's cost (bench/poll_cost.py).
A process that sees many requests from one user counts several of them at once (the
limiter's `cost`) and lets the next ones through from that reservation for
`RESERVE_S`; a user sending requests less often than about every 5 ms to one process is
counted one request at a time, as before.

- The shared count is never lower than the requests served: a reservation is counted
  before its first request is let through, so the counter's limit is never exceeded.
  (Units counted at t may serve requests until t + RESERVE_S: measured by an exact
  sliding window rather than the counter's own, a process can run up to one reservation
  ahead, within the counter's own approximation.)
- The size follows the rate this process sees for the user: what 80 % of a
  reservation's lifetime brings at the rate the last one was used, at most 1 % of the
  limit (a limit under 200 per window is counted exactly) and `MAX_CHUNK`. Steady
  traffic uses each reservation up before it lapses; units are left unused, and stay
  counted, only when the user's rate falls: at most one reservation per fall.

Imports the standard library only.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

RESERVE_S = 0.1
MAX_CHUNK = 32
MAX_KEYS = 10_000  # beyond, lapsed reservations are forgotten


@dataclass
class Reservation:
    size: int
    left: int
    started: float
    until: float


class Reservations:
    """Per key, the requests counted in the shared store and not yet served."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._held: dict[str, Reservation] = {}
        self._lock = threading.Lock()  # gunicorn's threads share one process's reservations

    def take(self, key: str) -> bool:
        """Serve one request of `key` from its reservation, if it holds one."""
        with self._lock:
            held = self._held.get(key)
            if held is None or held.left == 0 or held.until <= self._clock():
                return False
            held.left -= 1
            return True

    def next_size(self, key: str, limit: int) -> int:
        """How many requests to count at once for `key`, whose reservation is spent, under
        a limit of `limit` per window."""
        cap = min(MAX_CHUNK, max(1, limit // 100))
        now = self._clock()
        with self._lock:
            held = self._held.get(key)
        if held is None or now - held.until > RESERVE_S:
            return 1  # no recent traffic from this key here
        served = held.size - held.left
        used_for = (now if now < held.until else held.until) - held.started
        rate = served / max(used_for, 1e-4)  # requests per second, here
        return max(1, min(cap, int(0.8 * rate * RESERVE_S)))

    def hold(self, key: str, size: int) -> None:
        """`size` units were just counted for `key`; one of them serves this request. Units
        another thread reserved meanwhile and has not used are kept, not dropped."""
        with self._lock:
            now = self._clock()
            if len(self._held) > MAX_KEYS:
                self._held = {k: r for k, r in self._held.items() if r.until > now}
            held = self._held.get(key)
            if held is not None and held.until > now and held.left > 0:
                self._held[key] = Reservation(held.size + size, held.left + size - 1,
                                              held.started, now + RESERVE_S)
            else:
                self._held[key] = Reservation(size, size - 1, now, now + RESERVE_S)
