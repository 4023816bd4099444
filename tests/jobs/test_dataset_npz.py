""".npz uploads read block by block: same arrays as a whole read, errors name global
rows, and with a scratch folder X stays on disk."""
from __future__ import annotations

import io

import numpy as np
import pytest

from jobs import dataset_npz
from jobs.dataset_npz import parse_npz
from jobs.errors import InvalidInput

BIG = 10**9


def npz(compress: bool = False, **arrays) -> io.BytesIO:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    buf.seek(0)
    return buf


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(dataset_npz, "_BLOCK_BYTES", 64)  # two float32 rows of 8


def data(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    X = np.arange(11 * 8, dtype=np.float64).reshape(11, 8) / 7
    return X.astype(dtype), np.arange(11) % 2


@pytest.mark.parametrize("compress", [False, True])
def test_blocks_read_the_same_features_into_a_scratch_memmap(small_blocks, tmp_path, compress):
    X, y = data()
    p = parse_npz(npz(compress, X=X, y=y), max_cells=BIG, scratch=tmp_path)
    assert isinstance(p.X, np.memmap) and not p.X.flags.writeable
    assert p.X.dtype == np.float32 and np.array_equal(p.X, X)
    assert p.classes == ["0", "1"] and np.array_equal(p.y, y)


@pytest.mark.parametrize("layout", ["big-endian", "fortran", "int16"])
def test_other_layouts_give_the_canonical_features(small_blocks, tmp_path, layout):
    X, y = data(np.float64)
    sent = {"big-endian": X.astype(">f8"), "fortran": np.asfortranarray(X),
            "int16": (X * 7).astype(np.int16)}[layout]
    p = parse_npz(npz(X=sent, y=y), max_cells=BIG, scratch=tmp_path)
    assert p.X.dtype == np.float64 and p.X.dtype.byteorder in "=<"
    assert np.array_equal(p.X, sent.astype(np.float64))


def test_a_non_finite_cell_in_a_later_block_names_its_row(small_blocks):
    X, y = data()
    X[9, 5] = np.inf
    with pytest.raises(InvalidInput) as info:
        parse_npz(npz(X=X, y=y), max_cells=BIG)
    assert info.value.details[0] == ("X[9][5]", "not a finite number")


def test_object_labels_are_still_refused_before_any_data_is_read(tmp_path):
    objects = np.array([{"a": 1}, None, 3], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, X=np.zeros((3, 1)), y=objects, allow_pickle=True)
    buf.seek(0)
    with pytest.raises(InvalidInput) as info:
        parse_npz(buf, max_cells=BIG, scratch=tmp_path)
    assert "pickled or object arrays are refused" in str(info.value)
    assert not any(tmp_path.iterdir())
