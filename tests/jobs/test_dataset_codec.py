"""The stored form: the same bytes whether X is in memory or on disk, and a worker
memory-maps X out of the blob instead of reading it."""
from __future__ import annotations

import io

import numpy as np
import pytest

from jobs.dataset_codec import encode, open_arrays, write_canonical
from jobs.dataset_npz import parse_npz
from jobs.dataset_types import ParsedDataset

BIG = 10**9


def upload(X: np.ndarray, y: np.ndarray) -> io.BytesIO:
    buf = io.BytesIO()
    np.savez(buf, X=X, y=y)
    buf.seek(0)
    return buf


def test_disk_backed_features_encode_to_the_same_bytes(tmp_path):
    X, y = np.random.default_rng(0).standard_normal((300, 7)).astype(np.float32), np.arange(300) % 3
    in_memory = parse_npz(upload(X, y), max_cells=BIG)
    on_disk = parse_npz(upload(X, y), max_cells=BIG, scratch=tmp_path)
    assert isinstance(on_disk.X, np.memmap) and not isinstance(in_memory.X, np.memmap)
    assert encode(on_disk) == encode(in_memory)
    with open(tmp_path / "blob.npz", "w+b") as f:
        write_canonical(on_disk, f)
    assert (tmp_path / "blob.npz").read_bytes() == encode(in_memory)[0]


def test_open_arrays_maps_x_read_only_from_the_blob(tmp_path):
    X, y = np.arange(40, dtype=np.float64).reshape(10, 4), np.arange(10) % 2
    blob = tmp_path / "blob.npz"
    blob.write_bytes(encode(parse_npz(upload(X, y), max_cells=BIG))[0])
    mapped, labels = open_arrays(blob)
    assert np.array_equal(mapped, X) and np.array_equal(labels, y)
    assert not mapped.flags.writeable
    assert isinstance(mapped.base, np.memmap) and str(mapped.base.filename) == str(blob)


def test_open_arrays_reads_a_compressed_blob_whole(tmp_path):
    X, y = np.ones((3, 2)), np.array([0, 1, 0])
    blob = tmp_path / "blob.npz"
    np.savez_compressed(blob, X=X, y=y)
    loaded, labels = open_arrays(blob)
    assert np.array_equal(loaded, X) and not isinstance(loaded.base, np.memmap)
    assert np.array_equal(labels, y)



@pytest.mark.parametrize("n, d", [(1, 1), (7, 3), (1000, 13)])
def test_mapped_features_are_64_byte_aligned_in_the_file(tmp_path, n, d):
    # numpy copies a whole unaligned array before each take: a minibatch gather from an
    # unaligned map would cost a full copy every step.
    X = np.ones((n, d), np.float32)
    blob = tmp_path / "blob.npz"
    blob.write_bytes(encode(ParsedDataset(X, np.zeros((n, 1)), "regression"))[0])
    mapped, _ = open_arrays(blob)
    assert isinstance(mapped.base, np.memmap) and mapped.base.offset % 64 == 0
    assert mapped.flags.aligned and np.array_equal(mapped, X)
