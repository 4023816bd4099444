"""PostgreSQL one-dimensional arrays in the binary wire format, built with numpy.

The metric writer sends each column of a flush as one array parameter (INSERT ... SELECT
FROM unnest(...)). Built here, a column of 6000 floats is a few numpy calls; as a text
literal it was one `repr` per value, and psycopg's own list dumper inspects every
element: either cost more than the insert itself. Binary also carries every float
exactly, subnormals included, and spares the server from parsing text.

Format (PostgreSQL's array_send): int32 ndim, int32 has-nulls, int32 element oid, then
per dimension int32 length and int32 lower bound, then per element an int32 byte length
(-1 for NULL, with no data) and the value, all big-endian. Imports numpy and psycopg only.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from psycopg.adapt import Dumper
from psycopg.pq import Format

FLOAT8_OID, INT4_OID, BYTEA_OID = 701, 23, 17


class Float8Array(bytes):
    """A float8[] already in the binary wire format."""


class Int4Array(bytes):
    """An int4[] already in the binary wire format."""


class ByteaArray(bytes):
    """A bytea[] already in the binary wire format."""


class _Float8ArrayDumper(Dumper):
    format = Format.BINARY
    oid = 1022  # float8[]

    def dump(self, obj: bytes) -> bytes:
        return obj


class _Int4ArrayDumper(_Float8ArrayDumper):
    oid = 1007  # int4[]


class _ByteaArrayDumper(_Float8ArrayDumper):
    oid = 1001  # bytea[]


def register(adapters) -> None:
    """Teach a psycopg connection's (or context's) adapters to send these arrays as they are."""
    adapters.register_dumper(Float8Array, _Float8ArrayDumper)
    adapters.register_dumper(Int4Array, _Int4ArrayDumper)
    adapters.register_dumper(ByteaArray, _ByteaArrayDumper)


def float8_array(values: Sequence[float | None]) -> Float8Array:
    """Encode floats; None, NaN and ±inf become NULL (they have no place in a metric row)."""
    a = np.asarray(values, dtype=np.float64)  # None arrives as NaN
    null = ~np.isfinite(a)
    return Float8Array(_encode(a, null, ">f8", FLOAT8_OID))


def int4_array(values: Sequence[int]) -> Int4Array:
    a = np.asarray(values, dtype=np.int64)
    if a.size and (a.min() < -2**31 or a.max() >= 2**31):
        raise ValueError("value out of int4 range")
    return Int4Array(_encode(a, np.zeros(a.shape, bool), ">i4", INT4_OID))


def bytea_array(rows: np.ndarray) -> ByteaArray:
    """Encode the rows of an (n, width) uint8 array as n bytea values of `width` bytes."""
    n, width = rows.shape
    cells = np.empty(n, dtype=[("length", ">i4"), ("value", np.uint8, (width,))])
    cells["length"] = width
    cells["value"] = rows
    return ByteaArray(struct.pack(">5i", 1, 0, BYTEA_OID, n, 1) + cells.tobytes())


def _encode(a: np.ndarray, null: np.ndarray, kind: str, oid: int) -> bytes:
    """(n,) values and NULL mask -> header + n (length, value) cells, NULL cells without value."""
    width = np.dtype(kind).itemsize
    cells = np.empty(a.size, dtype=[("length", ">i4"), ("value", kind)])
    cells["length"] = np.where(null, -1, width)
    cells["value"] = np.where(null, 0, a)
    body = cells.view(np.uint8).reshape(a.size, 4 + width)
    has_null = bool(null.any())
    if has_null:
        keep = np.ones(body.shape, bool)
        keep[null, 4:] = False
        body = body[keep]
    return struct.pack(">5i", 1, int(has_null), oid, a.size, 1) + body.tobytes()
