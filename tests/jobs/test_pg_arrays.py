"""The binary arrays the metric writer sends: decoded here by hand, and by PostgreSQL."""
from __future__ import annotations

import struct

import psycopg
import pytest

from jobs.pg_arrays import float8_array, int4_array, register
from tests.integration.services import PG_ADMIN_URL

VALUES = [0.1, None, 5e-324, float("nan"), -1.7976931348623157e308, float("inf"), 1 / 3]
EXPECTED = [0.1, None, 5e-324, None, -1.7976931348623157e308, None, 1 / 3]


def decode(data: bytes, oid: int, fmt: str) -> list:
    """array_recv, written out: header, one dimension, then (length, value) cells."""
    ndim, has_null, elem, n, lower = struct.unpack_from(">5i", data)
    assert (ndim, elem, lower) == (1, oid, 1)
    out, pos = [], 20
    for _ in range(n):
        (length,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if length == -1:
            out.append(None)
            continue
        out.append(struct.unpack_from(fmt, data, pos)[0])
        pos += length
    assert pos == len(data) and has_null == (None in out)
    return out


def test_floats_keep_every_bit_and_non_finite_values_become_null():
    assert decode(float8_array(VALUES), 701, ">d") == EXPECTED
    assert decode(float8_array([1.5, 2.5]), 701, ">d") == [1.5, 2.5]


def test_ints_are_int4_and_refuse_what_does_not_fit():
    assert decode(int4_array([1, -7, 2**31 - 1]), 23, ">i") == [1, -7, 2**31 - 1]
    with pytest.raises(ValueError, match="int4"):
        int4_array([2**31])


@pytest.mark.integration
def test_postgres_reads_them_as_float8_and_int4_arrays():
    url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        register(conn.adapters)
        floats, ints, kinds = conn.execute(
            "SELECT %b, %b, pg_typeof(%b)::text || ' ' || pg_typeof(%b)::text",
            (float8_array(VALUES), int4_array([3, 4]), float8_array([1.0]), int4_array([1]))
        ).fetchone()
    assert kinds == "double precision[] integer[]"
    assert ints == [3, 4]
    assert floats == EXPECTED  # bit for bit: no text round trip in between
