"""Counting a busy user's requests in the shared store a few at a time.

One Redis round trip per request was a quarter of a cached poll's cost (bench/poll_cost.py).
A process that sees many requests from one user counts several of them at once (the
limiter's `cost`) and lets the next ones through from that reservation for
`RESERVE_S`; a user sending one request at a time is counted one at a time, as before.

- The shared count is never lower than the requests served: a reservation is counted
  before its first request is let through. The limit is never exceeded.
- The price is a little strictness: units reserved and not used before the reservation
  lapses stay counted, so a user whose rate drops may be refused a few requests per
  process early in a window: at most 1 % of the limit each (a limit under 200 per window
  is counted exactly), never more than `MAX_CHUNK` - 1.
- The size adapts: it doubles while reservations run out before they lapse, and falls
  to what the last one served when they lapse unused; after a quiet spell it is 1.

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
        a limit of `limit` per window: at most 1 % of it (so a small limit is counted one
        request at a time, exactly) and at most MAX_CHUNK."""
        cap = min(MAX_CHUNK, max(1, limit // 100))
        held = self._held.get(key)
        now = self._clock()
        if held is None or now - held.until > RESERVE_S:
            return 1  # no recent traffic from this key here
        if held.left == 0:
            return min(cap, held.size * 2)  # ran out early: the rate is higher
        return min(cap, max(1, held.size - held.left))  # lapsed: what it served

    def hold(self, key: str, size: int) -> None:
        """`size` units were just counted for `key`; one of them serves this request."""
        with self._lock:
            if len(self._held) > MAX_KEYS:
                now = self._clock()
                self._held = {k: r for k, r in self._held.items() if r.until > now}
            self._held[key] = Reservation(size, size - 1, self._clock() + RESERVE_S)
