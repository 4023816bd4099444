"""CSV parsing in blocks: numpy's fast path and the csv module's row path agree, errors
keep their line numbers across blocks, and uploads keep their features on disk."""
from __future__ import annotations

import io

import numpy as np
import pytest

from jobs import dataset_csv
from jobs.dataset_csv import parse_csv
from jobs.errors import InvalidInput, LimitExceeded

BIG = 10**9


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(dataset_csv, "_BLOCK_LINES", 3)


def csv_of(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def rows(n: int) -> list[str]:
    return [f"{i * 0.5},{i % 3},{-i}.25" for i in range(n)]


def error_of(text: str, **kwargs) -> tuple[str, str]:
    with pytest.raises(InvalidInput) as info:
        parse_csv(csv_of(text), "y", max_cells=BIG, **kwargs)
    return info.value.details[0]


@pytest.mark.parametrize("t", [0, 1, 3])
def test_fast_and_row_paths_give_the_same_dataset(small_blocks, t):
    header = ["a", "b", "c"]
    header.insert(t, "y")
    body = []
    for i, line in enumerate(rows(11)):
        cells = line.split(",")
        cells.insert(t, "yes" if i % 2 else "no")
        body.append(",".join(cells))
    plain = ",".join(header) + "\n" + "\n\n".join(body) + "\r\n"
    # One quoted label sends everything after it down the csv module's path.
    quoted = plain.replace(",no", ',"no"', 1) if t else plain.replace("\nno,", '\n"no",', 1)
    assert quoted != plain
    fast, slow = (parse_csv(csv_of(text), "y", max_cells=BIG) for text in (plain, quoted))
    assert np.array_equal(fast.X, slow.X) and fast.X.dtype == np.float64
    assert np.array_equal(fast.y, slow.y) and fast.classes == slow.classes == ["no", "yes"]
    assert fast.X[3].tolist() == [1.5, 0.0, -3.25]


def test_a_bad_cell_in_a_later_block_names_its_line_and_column(small_blocks):
    lines = ["a,b,c,y"] + [f"{r},x" for r in rows(9)]
    lines[7] = "1,oops,2,x"  # physical line 8
    assert error_of("\n".join(lines)) == (
        "csv line 8, column 'b'", "'oops' is not a number")


def test_line_numbers_count_blank_lines_and_multi_line_quoted_labels(small_blocks):
    text = 'a,y\n1,p\n\n2,"two\nlines"\n3,q\n4,r\nnan,q\n'
    assert error_of(text) == ("csv line 8, column 'a'", "not a finite number")


def test_a_ragged_row_in_a_later_block(small_blocks):
    text = "a,b,y\n" + "1,2,x\n" * 5 + "1,2\n" + "1,2,z\n"
    assert error_of(text) == ("csv line 7", "has 2 values; expected 3 (ragged rows)")


def test_numbers_only_python_reads_still_parse(small_blocks):
    p = parse_csv(csv_of("a,y\n1_000,x\n2,y\n 3 ,x\n"), "y", max_cells=BIG)
    assert p.X[:, 0].tolist() == [1000.0, 2.0, 3.0]


def test_cell_limit_is_exact_across_blocks(small_blocks):
    text = "a,b,y\n" + "1,2,x\n2,3,z\n" * 5
    with pytest.raises(LimitExceeded):
        parse_csv(csv_of(text), "y", max_cells=19)
    assert parse_csv(csv_of(text), "y", max_cells=20).n_samples == 10


def test_with_a_scratch_folder_features_stay_on_disk(tmp_path):
    text = "a,b,y\n" + "\n".join(f"{i},{i / 4},{'xy'[i % 2]}" for i in range(5000)) + "\n"
    in_memory = parse_csv(csv_of(text), "y", max_cells=BIG)
    on_disk = parse_csv(csv_of(text), "y", max_cells=BIG, scratch=tmp_path)
    assert isinstance(on_disk.X, np.memmap) and not on_disk.X.flags.writeable
    assert [p.parent for p in tmp_path.iterdir()] == [tmp_path]
    assert np.array_equal(on_disk.X, in_memory.X) and np.array_equal(on_disk.y, in_memory.y)
