"""The stored form of a dataset: an uncompressed .npz with arrays X and y.

The bytes are canonical (pinned zip metadata, little-endian C-order arrays, .npy format
1.0) so equal arrays give equal bytes and content addressing deduplicates. Because the
members are stored, not deflated, a worker can memory-map X straight out of the blob
(`open_arrays`) instead of reading it into memory. A padding field in each member's zip
header puts the array data at a multiple of 64 bytes in the file: numpy copies a whole
unaligned array before every `take`, which would make minibatch gathers from the map
cost a full copy each.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from jobs.dataset_npz import read_npy_header
from jobs.dataset_types import ParsedDataset

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a zip local file header, before its names
_ALIGN = 64  # .npy headers are padded to a multiple of this, so the data lands on it too
_ZIP64_EXTRA = 20  # zipfile appends a zip64 field of this size to a force_zip64 header
_PAD_ID = 0x6770  # "gp": an unregistered extra-field id, which readers skip
_COPY_BYTES = 4 * 1024 * 1024


def _file_backed(arr: np.ndarray) -> Path | None:
    """The raw file a whole-file little-endian C-order memmap reads, else None."""
    if not isinstance(arr, np.memmap) or arr.filename is None or arr.offset != 0:
        return None
    path = Path(arr.filename)
    whole = path.stat().st_size == arr.nbytes and arr.flags.c_contiguous
    return path if whole and arr.dtype.byteorder in "<|" else None


def _write_npy(f: BinaryIO, arr: np.ndarray) -> None:
    raw = _file_backed(arr)
    if raw is None:
        canonical = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        np.lib.format.write_array(f, canonical, version=(1, 0), allow_pickle=False)
        return
    # The same bytes write_array would give, copied with plain reads: mapping the file
    # would count every page against this process's memory.
    np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(arr))
    with raw.open("rb") as src:
        shutil.copyfileobj(src, f, _COPY_BYTES)


def write_canonical(parsed: ParsedDataset, out: BinaryIO) -> None:
    """Write the canonical .npz of `parsed` to a seekable binary file."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in (("X", parsed.X), ("y", parsed.y)):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.create_system = 3
            info.external_attr = 0o644 << 16
            info.extra = _padding(out.tell(), len(info.filename))
            with zf.open(info, "w", force_zip64=True) as f:
                _write_npy(f, arr)


def _padding(header_offset: int, name_len: int) -> bytes:
    """An extra field that makes the member's data (after the .npy header) 64-aligned."""
    before = header_offset + _LOCAL_HEADER.size + name_len + _ZIP64_EXTRA + 4
    size = -before % _ALIGN
    return struct.pack("<HH", _PAD_ID, size) + b"\0" * size


def encode(parsed: ParsedDataset) -> tuple[bytes, str]:
    """Canonical .npz bytes (arrays X and y, as numpy.savez lays them out) and their sha256."""
    buf = io.BytesIO()
    write_canonical(parsed, buf)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def decode(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The (X, y) arrays of a blob written by `encode`, read into memory."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return npz["X"], npz["y"]


def open_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (X, y) arrays of a stored blob: X a read-only memory map when its member is
    stored uncompressed in C order (always, for blobs `write_canonical` wrote), y read."""
    with path.open("rb") as f, zipfile.ZipFile(f) as zf:
        info = zf.getinfo("X.npy")
        with zf.open("y.npy") as member:
            y = np.lib.format.read_array(member, allow_pickle=False)
        if info.compress_type == zipfile.ZIP_STORED:
            mapped = _map_member(f, path, info)
            if mapped is not None:
                return mapped, y
        with zf.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False), y


def _map_member(f: BinaryIO, path: Path, info: zipfile.ZipInfo) -> np.ndarray | None:
    f.seek(info.header_offset)
    fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    name_len, extra_len = fields[-2], fields[-1]
    f.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    shape, fortran, dtype = read_npy_header(f)
    if fortran or dtype.hasobject or 0 in shape or f.tell() % dtype.alignment:
        return None  # an unaligned map would be copied whole by every numpy take
    mapped = np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape)
    return mapped.view(np.ndarray)  # a plain array; it keeps the map alive through .base
