"""Every layer's telemetry of one epoch, as the bytes of its epoch row's `layers` column.

The value is an (L, 7) float64 table, little-endian and row-major: layer 1's
LAYER_FIELDS in order, then layer 2's, and so on; NaN where a value is non-finite or
does not apply (a tanh layer's dead fraction), as a NULL did in the per-layer rows this
replaced. One column of the epoch's own row instead of a row per layer: an XOR run's
2000 epochs cost PostgreSQL about 12 ms of CPU to insert this way, against 51 ms for
its 2000 epoch rows and 6000 layer rows (docs/service-performance.md, target 1), and a
read gets every layer of an epoch with the epoch.

Imports numpy and the engine's field names only.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlp.records import LAYER_FIELDS

WIDTH = len(LAYER_FIELDS)
DTYPE = np.dtype("<f8")
LAYER_BYTES = WIDTH * DTYPE.itemsize  # one layer's values; a value holds L of them


def pack(values: np.ndarray) -> list[bytes]:
    """(E, L, WIDTH) values -> E column values; non-finite values stored as NaN."""
    return [row.tobytes() for row in _rows(values)]


def packed(values: np.ndarray) -> np.ndarray:
    """(E, L, WIDTH) values as an (E, 8 * L * WIDTH) uint8 array: row i is `pack`'s i-th
    value (for encoders that take every row's bytes at once)."""
    return _rows(values).view(np.uint8)


def _rows(values: np.ndarray) -> np.ndarray:
    rows = np.ascontiguousarray(values, dtype=DTYPE).reshape(len(values), -1)
    finite = np.isfinite(rows)
    return rows if finite.all() else np.where(finite, rows, np.nan).astype(DTYPE)


def unpack(blobs: Sequence[bytes | None], n_layers: int) -> np.ndarray:
    """The (E, n_layers, WIDTH) float64 values of E column values; all NaN for a NULL or a
    value of another length (written for another network: never by this schema's writer)."""
    size = n_layers * LAYER_BYTES
    out = np.full((len(blobs), n_layers, WIDTH), np.nan)
    good = [i for i, blob in enumerate(blobs) if blob is not None and len(blob) == size]
    if len(good) == len(blobs):
        return np.frombuffer(b"".join(blobs), DTYPE).reshape(out.shape).astype(np.float64)
    if good:
        out[good] = np.frombuffer(b"".join(blobs[i] for i in good),
                                  DTYPE).reshape(len(good), n_layers, WIDTH)
    return out
