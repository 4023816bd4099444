"""Where a parser puts the feature rows it has checked: in memory, or on disk.

An upload's rows go to a raw little-endian file in the request's scratch folder, block
by block, and come back as a read-only memmap, so a 400 MB upload is never held in the
API process's memory at once (and never twice). Without a scratch folder (JSON-sized
data, unit tests) the blocks are simply concatenated.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class RowSink:
    """Append (m, d) blocks of one dtype; `finish()` returns the (n, d) array."""

    def __init__(self, d: int, dtype: np.dtype, scratch: Path | None = None):
        self.d, self.dtype = d, np.dtype(dtype).newbyteorder("<")
        self.n = 0
        self._blocks: list[np.ndarray] = []
        self._path = None if scratch is None else Path(scratch) / f"rows-{id(self)}.raw"
        self._file = None if self._path is None else self._path.open("wb")

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype).reshape(-1, self.d)
        if self._file is None:
            self._blocks.append(block)
        else:
            self._file.write(block.data)
        self.n += block.shape[0]

    def finish(self) -> np.ndarray:
        """The rows so far; at least one must have been appended."""
        if self._file is None:
            return np.concatenate(self._blocks) if len(self._blocks) > 1 else self._blocks[0]
        self._file.close()
        return np.memmap(self._path, dtype=self.dtype, mode="r", shape=(self.n, self.d))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
