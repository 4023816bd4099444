"""Reservation sizes: one at a time for a quiet or small-limit user, growing for a busy one."""
from __future__ import annotations

from service.rate_reservations import MAX_CHUNK, RESERVE_S, Reservations


def test_sizes_double_while_used_up_and_fall_back_when_unused():
    now = [0.0]
    held = Reservations(clock=lambda: now[0])
    sizes = []
    for _ in range(8):  # a busy user: each reservation is used up at once
        size = held.next_size("u", limit=100_000)
        held.hold("u", size)
        sizes.append(size)
        while held.take("u"):
            pass
    assert sizes == [1, 2, 4, 8, 16, 32, MAX_CHUNK, MAX_CHUNK]
    held.hold("u", 8)
    assert held.take("u") and held.take("u")  # 3 of 8 served (with hold's own)
    now[0] += RESERVE_S  # lapsed with 5 left: next time, what it served
    assert not held.take("u") and held.next_size("u", limit=100_000) == 3
    now[0] += 3 * RESERVE_S  # a quiet spell
    assert held.next_size("u", limit=100_000) == 1


def test_a_small_limit_is_counted_one_request_at_a_time():
    held = Reservations()
    held.hold("u", 1)
    assert not held.take("u")
    assert held.next_size("u", limit=199) == 1 and held.next_size("u", limit=400) == 2
