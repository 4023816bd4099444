""".npz uploads: arrays `X` (2-D numeric) and `y` (1-D or 2-D labels or targets).

Every member header is read and checked before any data (zip bombs, pickled or object
arrays, shapes that disagree with the member's size). X is then read from its member in
blocks of rows, converted and checked for non-finite cells block by block, and put into
a `RowSink`, so an upload is read once and never held whole in memory.
"""
from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from jobs.dataset_rows import RowSink
from jobs.dataset_targets import (Target, bool_target, matrix_target, numeric_target,
                                  string_target, y_where)
from jobs.dataset_types import ParsedDataset, check_cells, check_task, first_true, invalid
from jobs.errors import LimitExceeded

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_HEADER_SLACK = 64 * 1024
_PICKLE_REFUSED = "pickled or object arrays are refused"
_BLOCK_BYTES = 8 * 1024 * 1024


def read_npy_header(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an open .npy stream, left at the data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise invalid("file", f"unsupported .npy format version {version}")


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a member, read from its header without loading the data."""
    with zf.open(info) as f:
        shape, _, dtype = read_npy_header(f)
    if dtype.hasobject:
        raise invalid("file", _PICKLE_REFUSED)
    # read_array allocates prod(shape) items up front, so the header must fit the member.
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise invalid("file", f"array {info.filename!r} is truncated or has a bad header")
    return shape, dtype


def _npz_members(zf: zipfile.ZipFile, max_cells: int) -> dict[str, tuple]:
    names = {i.filename: i for i in zf.infolist()}
    if "X.npy" not in names or "y.npy" not in names:
        found = ", ".join(sorted(n.removesuffix(".npy") for n in names)) or "nothing"
        raise invalid("file", f"the .npz must contain arrays 'X' and 'y'; found: {found}")
    # The declared sizes are checked before anything is decompressed (zip bombs), and
    # zipfile never inflates a member past its declared size.
    budget = max_cells * 8 + _NPY_HEADER_SLACK
    headers = {}
    for key in ("X", "y"):
        info = names[f"{key}.npy"]
        _check_member_format(key, info)
        if info.file_size > budget:
            raise LimitExceeded("max_dataset_cells", max_cells, f"array {key!r} would "
                                f"decompress to {info.file_size} bytes; at most {budget} "
                                f"are allowed", kind="size", field="file")
        headers[key] = _npy_header(zf, info)
    return headers


# What numpy.savez (stored) and numpy.savez_compressed (deflated) write. Anything else
# would fail deep inside zipfile (an unknown method, or a password prompt), so it is
# refused by name here, before any member is opened.
_NPZ_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


def _check_member_format(key: str, info: zipfile.ZipInfo) -> None:
    if info.flag_bits & 0x1:
        raise invalid("file", f"array {key!r} is encrypted; upload an unencrypted .npz")
    if info.compress_type not in _NPZ_COMPRESSION:
        raise invalid("file", f"array {key!r} uses zip compression method "
                      f"{info.compress_type}; only stored or deflated members (what "
                      f"numpy.savez and numpy.savez_compressed write) are read")


def _check_npz_shapes(headers: dict[str, tuple], max_cells: int) -> None:
    (xs, xt), (ys, yt) = headers["X"], headers["y"]
    if len(xs) != 2:
        raise invalid("X", f"must be a 2-D array; got {len(xs)} dimensions")
    if xs[0] == 0:
        raise invalid("X", "has no rows")
    if xs[1] == 0:
        raise invalid("X", "has no columns")
    if xt.kind not in "iuf":
        raise invalid("X", f"must be a numeric array; got dtype {xt}")
    check_cells(xs[0], xs[1], max_cells, "X")
    if len(ys) not in (1, 2) or (len(ys) == 2 and ys[1] == 0):
        raise invalid("y", "must be a 1-D array or a 2-D array with at least one column")
    if ys[0] != xs[0]:
        raise invalid("y", f"has {ys[0]} entries but X has {xs[0]} rows")
    if yt.kind not in "biufU":
        raise invalid("y", f"must hold numbers, booleans or unicode strings, not {yt}")


def _npz_target(y: np.ndarray, task: str | None) -> Target:
    if y.dtype.kind == "U":
        if y.ndim != 1:
            raise invalid("y", "string labels must be a 1-D array")
        return string_target(y.tolist(), task, y_where)
    if y.dtype.kind == "b":
        if y.ndim != 1:
            raise invalid("y", "boolean labels must be a 1-D array")
        return bool_target(y, task, y_where)
    values = y.astype(np.float64)
    if values.ndim == 2:
        return matrix_target(values, task, y_where)
    return numeric_target(values, task, y_where)


def _features_dtype(dtype: np.dtype) -> np.dtype:
    # float32 is kept (half the storage and memory); every other number becomes float64.
    return np.dtype(np.float32 if dtype == np.float32 else np.float64)


def _checked_block(block: np.ndarray, row0: int) -> np.ndarray:
    features = block.astype(_features_dtype(block.dtype), copy=False)
    bad = ~np.isfinite(features)
    if bad.any():
        i, j = first_true(bad)
        raise invalid(f"X[{row0 + i}][{j}]", "not a finite number")
    return features


def _read_features(zf: zipfile.ZipFile, sink_for: Callable[[int, np.dtype], RowSink]) -> RowSink:
    """X from its member, block by block into the sink `sink_for(d, dtype)` returns."""
    with zf.open("X.npy") as f:
        shape, fortran, dtype = read_npy_header(f)
        if fortran:  # column-major: rows are not contiguous, so read it whole
            f.seek(0)
            sink = sink_for(shape[1], _features_dtype(dtype))
            sink.append(_checked_block(np.lib.format.read_array(f, allow_pickle=False), 0))
            return sink
        n, d = shape
        sink = sink_for(d, _features_dtype(dtype))
        rows = max(1, _BLOCK_BYTES // (d * dtype.itemsize))
        for row0 in range(0, n, rows):
            m = min(rows, n - row0)
            data = f.read(m * d * dtype.itemsize)
            if len(data) != m * d * dtype.itemsize:
                raise invalid("file", "array 'X' is truncated")
            sink.append(_checked_block(np.frombuffer(data, dtype).reshape(m, d), row0))
        return sink


def _open_zip(stream: BinaryIO) -> BinaryIO:
    fileobj = stream if stream.seekable() else io.BytesIO(stream.read())
    start = fileobj.tell()
    magic = fileobj.read(len(_NPY_MAGIC))
    fileobj.seek(start)
    if magic.startswith(_NPY_MAGIC):
        raise invalid("file", "a plain .npy array is not accepted; upload an .npz with "
                              "arrays X and y (numpy.savez)")
    if not magic.startswith(_ZIP_MAGICS):
        raise invalid("file", "not an .npz archive; upload one with arrays X and y")
    return fileobj


def parse_npz(stream: BinaryIO, task: str | None = None, *, max_cells: int,
              scratch: Path | None = None) -> ParsedDataset:
    """Parse an .npz archive holding arrays `X` (2-D numeric) and `y` (1-D or 2-D).

    With `scratch` (a folder) the features are kept on disk there as a read-only memmap.
    """
    task = check_task(task)
    fileobj = _open_zip(stream)
    sinks: list[RowSink] = []

    def sink_for(d: int, dtype: np.dtype) -> RowSink:
        sinks.append(RowSink(d, dtype, scratch))
        return sinks[-1]

    try:
        with zipfile.ZipFile(fileobj) as zf:
            headers = _npz_members(zf, max_cells)
            _check_npz_shapes(headers, max_cells)
            with zf.open("y.npy") as f:
                y = np.lib.format.read_array(f, allow_pickle=False)
            sink = _read_features(zf, sink_for)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise invalid("file", _PICKLE_REFUSED) from None
        raise invalid("file", f"unreadable .npz: {exc}") from None
    finally:
        for s in sinks:
            s.close()
    target, task, classes = _npz_target(y, task)
    return ParsedDataset(sink.finish(), target, task, classes)
