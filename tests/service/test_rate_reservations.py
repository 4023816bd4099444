"""Reservation sizes follow the rate a process sees: one at a time for a quiet user or a
small limit, growing for a busy one, and units are left unused only when the rate falls."""
from __future__ import annotations

import pytest

from service.rate_reservations import MAX_CHUNK, RESERVE_S, Reservations

LIMIT = 100_000


def counted_for(interval_s: float, requests: int, limit: int = LIMIT) -> int:
    """Units counted to serve `requests` arriving every `interval_s` seconds."""
    now = [0.0]
    held = Reservations(clock=lambda: now[0])
    counted = 0
    for _ in range(requests):
        if not held.take("u"):
            size = held.next_size("u", limit)
            held.hold("u", size)
            counted += size
        now[0] += interval_s
    return counted


@pytest.mark.parametrize("interval_s", [0.2, 0.105, 0.05, 0.01, 0.001, 0.0001])
def test_steady_traffic_wastes_at_most_one_reservation(interval_s):
    """(A client polling every 105 ms once cost 1.5 units per request: sizes alternated 1, 2.)"""
    counted = counted_for(interval_s, 2000)
    assert 2000 <= counted < 2000 + MAX_CHUNK


def test_sizes_grow_with_the_rate_and_fall_back_after_a_quiet_spell():
    now = [0.0]
    held = Reservations(clock=lambda: now[0])
    held.hold("u", 1)
    now[0] += 0.001  # the next request 1 ms later: 1000 per second here
    assert held.next_size("u", LIMIT) == MAX_CHUNK  # 80 % of 100 ms at that rate: 80
    assert held.next_size("u", 2000) == 20  # at most 1 % of the limit
    held.hold("u", 8)
    for _ in range(3):
        assert held.take("u")
    now[0] += RESERVE_S  # lapsed having served 4 of 8 in its lifetime
    assert not held.take("u") and held.next_size("u", LIMIT) == 3
    now[0] += 3 * RESERVE_S  # a quiet spell
    assert held.next_size("u", LIMIT) == 1


def test_a_small_limit_is_counted_one_request_at_a_time():
    assert counted_for(0.0001, 500, limit=199) == 500


def test_units_reserved_by_another_thread_meanwhile_are_kept():
    now = [0.0]
    held = Reservations(clock=lambda: now[0])
    held.hold("u", 4)  # thread A: serves one, three left
    held.hold("u", 4)  # thread B found none left a moment ago; A's three stay
    assert sum(held.take("u") for _ in range(10)) == 6
