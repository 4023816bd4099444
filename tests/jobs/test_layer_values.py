"""An epoch row's `layers` value: every layer's telemetry, exactly, NaN where not finite."""
from __future__ import annotations

import numpy as np
import pytest

from jobs.layer_values import WIDTH, pack, packed, unpack
from jobs.pg_arrays import bytea_array


def values(epochs: int, layers: int) -> np.ndarray:
    # Values a text round trip could bend (subnormals, the largest double), and
    # non-finite ones, which are stored as NaN.
    out = np.random.default_rng(0).standard_normal((epochs, layers, WIDTH))
    out[0, 0, :4] = 5e-324, 1.7976931348623157e308, -0.0, 1 / 3
    out[1, -1, :3] = np.inf, -np.inf, np.nan
    return out


def test_values_round_trip_exactly_with_non_finite_as_nan():
    original = values(4, 3)
    back = unpack(pack(original), 3)
    finite = np.isfinite(original)
    assert back.shape == (4, 3, WIDTH) and back.dtype == np.float64
    assert np.array_equal(back[finite].view(np.uint64), original[finite].view(np.uint64))
    assert np.isnan(back[~finite]).all() and (~finite).sum() == 3


def test_layer_one_comes_first_and_each_layer_holds_its_fields_in_order():
    table = np.arange(2 * WIDTH, dtype=np.float64).reshape(1, 2, WIDTH)
    [blob] = pack(table)
    assert np.frombuffer(blob, "<f8").tolist() == list(range(2 * WIDTH))
    assert packed(table).tobytes() == blob


@pytest.mark.parametrize("bad", [None, b"", b"\0" * 8, b"\0" * (8 * WIDTH * 3)])
def test_a_missing_or_foreign_value_reads_as_nan(bad):
    good = pack(np.ones((2, 2, WIDTH)))
    out = unpack([good[0], bad, good[1]], 2)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()


def test_bytea_array_is_postgres_binary_format():
    rows = packed(values(3, 2))
    encoded = bytea_array(rows)
    header = np.frombuffer(encoded[:20], ">i4").tolist()
    assert header == [1, 0, 17, 3, 1]  # one dimension, no NULLs, bytea, 3 elements from 1
    cells = np.frombuffer(encoded[20:], dtype=[("length", ">i4"), ("value", np.uint8, (16 * 7,))])
    assert (cells["length"] == 8 * 2 * WIDTH).all() and np.array_equal(cells["value"], rows)
