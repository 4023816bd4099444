"""Dataset parsing (JSON, built-in, CSV, .npz), canonical encoding, and the dataset rows."""
from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import datetime

import numpy as np
import pytest
from sqlalchemy import select

from jobs import datasets as ds
from jobs.errors import Conflict, InvalidInput, LimitExceeded, NotFound
from jobs.models import ACTIVE_STATUSES, FINISHED_STATUSES, Dataset, Job
from jobs.storage import CorruptBlob

BIG = 10**9  # a max_cells that never binds


def raises_invalid(fn, *args, field: str, text: str = "", **kwargs) -> InvalidInput:
    """Call fn, expect InvalidInput with a detail on `field` whose message contains `text`."""
    with pytest.raises(InvalidInput) as info:
        fn(*args, **kwargs)
    details = dict(info.value.details)
    assert field in details, info.value.details
    assert text in details[field], details[field]
    return info.value


def grid(n: int, d: int) -> list[list[float]]:
    return [[float(i * d + j) for j in range(d)] for i in range(n)]


# --- JSON: shapes, dtypes and task inference ---------------------------------------------

def test_json_string_labels_are_classification_with_sorted_classes():
    p = ds.parse_json(grid(4, 3), ["dog", "cat", "dog", "bird"])
    assert p.task == "classification"
    assert p.classes == ["bird", "cat", "dog"]
    assert p.y.dtype == np.int64 and p.y.tolist() == [2, 1, 2, 0]
    assert p.X.dtype == np.float64 and p.X.shape == (4, 3)
    assert (p.n_samples, p.n_features, p.n_outputs) == (4, 3, 3)


def test_json_few_integers_are_classification_sorted_numerically():
    p = ds.parse_json(grid(4, 1), [10, -1, 2, 10])
    assert p.task == "classification"
    assert p.classes == ["-1", "2", "10"]
    assert p.y.tolist() == [2, 0, 1, 2]


def test_json_integral_floats_count_as_integers():
    p = ds.parse_json(grid(3, 1), [1.0, 0.0, 1.0])
    assert p.task == "classification" and p.classes == ["0", "1"]


def test_json_many_distinct_integers_are_regression():
    p = ds.parse_json(grid(21, 1), list(range(21)))
    assert p.task == "regression" and p.classes is None
    assert p.y.dtype == np.float64 and p.y.shape == (21, 1)
    assert p.n_outputs == 1


def test_json_twenty_distinct_integers_are_still_classification():
    assert ds.parse_json(grid(20, 1), list(range(20))).task == "classification"


def test_json_fractional_numbers_are_regression():
    p = ds.parse_json(grid(3, 2), [0.5, 1, 2])
    assert p.task == "regression" and p.y[:, 0].tolist() == [0.5, 1.0, 2.0]


def test_json_booleans_are_classification():
    p = ds.parse_json(grid(3, 2), [True, False, True])
    assert p.task == "classification"
    assert p.classes == ["false", "true"] and p.y.tolist() == [1, 0, 1]


def test_json_rows_are_multi_output_regression():
    p = ds.parse_json(grid(3, 2), [[1, 2], [3, 4], [5, 6]])
    assert p.task == "regression" and p.y.shape == (3, 2) and p.n_outputs == 2


def test_explicit_regression_overrides_integer_inference():
    p = ds.parse_json(grid(3, 1), [0, 1, 0], task="regression")
    assert p.task == "regression" and p.y.shape == (3, 1)


def test_explicit_classification_accepts_many_integers():
    p = ds.parse_json(grid(30, 1), list(range(30)), task="classification")
    assert p.task == "classification" and len(p.classes) == 30


def test_explicit_classification_accepts_single_column_rows():
    p = ds.parse_json(grid(3, 1), [[0], [1], [1]], task="classification")
    assert p.classes == ["0", "1"] and p.y.tolist() == [0, 1, 1]


def test_json_float32_is_not_kept_from_json():
    assert ds.parse_json([[1.5], [2.5]], ["a", "b"]).X.dtype == np.float64


# --- JSON: errors name the field ---------------------------------------------------------

def test_ragged_rows_name_the_row():
    X = grid(5, 4)
    X[3] = [1.0, 2.0]
    raises_invalid(ds.parse_json, X, [0, 1, 0, 1, 0], field="X[3]",
                   text="row 3 has 2 values; expected 4 (ragged rows)")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), "nan", "Infinity",
                                 "1.5", None, 10**400])
def test_non_finite_cells_name_the_cell(bad):
    X = grid(6, 2)
    X[5][1] = bad
    raises_invalid(ds.parse_json, X, [0, 1] * 3, field="X[5][1]", text="not a finite number")


def test_booleans_in_X_are_refused():
    raises_invalid(ds.parse_json, [[1, True], [0, 1]], [0, 1], field="X[0][1]",
                   text="boolean")


def test_nested_cells_are_refused():
    raises_invalid(ds.parse_json, [[1, [2]], [0, 1]], [0, 1], field="X[0][1]",
                   text="nested too deep")


def test_y_length_must_match():
    raises_invalid(ds.parse_json, grid(10, 2), [0, 1] * 4 + [0], field="y",
                   text="has 9 entries but X has 10 rows")


@pytest.mark.parametrize("X, field, text", [
    ([], "X", "has no rows"),
    ([[]], "X", "has no columns"),
    ("1,2", "X", "list of rows"),
    ([1, 2], "X[0]", "list of numbers"),
    ([[1], 2], "X[1]", "list of numbers"),
])
def test_bad_X_shapes(X, field, text):
    raises_invalid(ds.parse_json, X, [0, 1], field=field, text=text)


@pytest.mark.parametrize("y, field, text", [
    ("ab", "y", "must be a list"),
    (["a", 1, "b"], "y[1]", "all labels must be of one kind"),
    ([True, 1, 0], "y[1]", "all labels must be of one kind"),
    (["a", None, "b"], "y[1]", "missing label"),
    (["a", "", "b"], "y[1]", "missing label"),
    ([{"a": 1}, 1, 2], "y[0]", "must be a number, string, boolean"),
    ([[1, 2], [3], [4, 5]], "y[1]", "ragged rows"),
    ([[1, 2], [3, float("nan")], [4, 5]], "y[1][1]", "not a finite number"),
    ([[1, 2], [3, True], [4, 5]], "y[1][1]", "boolean"),
    ([[1, [2]], [3, 4], [4, 5]], "y[0][1]", "nested too deep"),
    ([1, float("inf"), 0], "y[1]", "not a finite number"),
    ([1, 1, 1], "y", "at least 2 classes"),
    (["a", "a", "a"], "y", "at least 2 classes"),
    ([True, True, True], "y", "at least 2 classes"),
])
def test_bad_labels(y, field, text):
    raises_invalid(ds.parse_json, grid(3, 2), y, field=field, text=text)


def test_regression_with_string_labels_is_an_error():
    raises_invalid(ds.parse_json, grid(3, 1), ["a", "b", "a"], task="regression", field="y",
                   text="regression targets must be numbers")


def test_regression_with_booleans_is_an_error():
    raises_invalid(ds.parse_json, grid(2, 1), [True, False], task="regression", field="y")


def test_classification_with_fractional_numbers_is_an_error():
    raises_invalid(ds.parse_json, grid(3, 1), [1, 0.5, 0], task="classification", field="y[1]",
                   text="classification labels must be integers or strings")


def test_classification_with_multi_column_rows_is_an_error():
    raises_invalid(ds.parse_json, grid(2, 1), [[1, 2], [3, 4]], task="classification",
                   field="y", text="one label per row")


def test_unknown_task_is_an_error():
    raises_invalid(ds.parse_json, grid(2, 1), [0, 1], task="clustering", field="task")


def test_too_many_cells_is_a_size_limit():
    with pytest.raises(LimitExceeded) as info:
        ds.parse_json(grid(5, 4), [0, 1, 0, 1, 0], max_cells=19)
    assert info.value.limit == "max_dataset_cells" and info.value.value == 19
    assert info.value.kind == "size"
    assert ds.parse_json(grid(5, 4), [0, 1, 0, 1, 0], max_cells=20).n_samples == 5


# --- built-in generators -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["xor", "moons", "circles", "spirals", "blobs"])
def test_builtins_are_normalised_classification(name):
    p = ds.parse_builtin(name, n_samples=40, noise=0.1, seed=3)
    assert p.task == "classification" and p.X.dtype == np.float64 and p.X.ndim == 2
    assert p.y.dtype == np.int64 and len(p.classes) >= 2
    assert all(isinstance(c, str) for c in p.classes)
    assert p.n_outputs == len(p.classes)


def test_builtins_are_deterministic_by_seed():
    a, b = (ds.parse_builtin("moons", n_samples=50, noise=0.2, seed=7) for _ in range(2))
    c = ds.parse_builtin("moons", n_samples=50, noise=0.2, seed=8)
    assert np.array_equal(a.X, b.X) and not np.array_equal(a.X, c.X)
    assert ds.encode(a)[1] == ds.encode(b)[1]


def test_unknown_builtin_lists_the_choices():
    err = raises_invalid(ds.parse_builtin, "swirl", field="builtin", text="moons")
    assert all(name in dict(err.details)["builtin"] for name in ds.BUILTINS)


@pytest.mark.parametrize("kwargs, field", [
    ({"n_samples": 3}, "n_samples"), ({"n_samples": 1_000_001}, "n_samples"),
    ({"n_samples": 10.0}, "n_samples"), ({"n_samples": True}, "n_samples"),
    ({"noise": -0.1}, "noise"), ({"noise": 10.5}, "noise"), ({"noise": float("nan")}, "noise"),
    ({"noise": float("inf")}, "noise"), ({"noise": "0.1"}, "noise"),
    ({"seed": -1}, "seed"), ({"seed": 2**40}, "seed"),
])
def test_builtin_parameter_bounds(kwargs, field):
    raises_invalid(ds.parse_builtin, "moons", field=field, **kwargs)


def test_builtin_bounds_are_inclusive():
    assert ds.parse_builtin("circles", n_samples=4, noise=0.0).n_samples == 4
    assert ds.parse_builtin("circles", n_samples=10, noise=10.0).n_samples == 10


def test_builtin_respects_max_cells():
    with pytest.raises(LimitExceeded) as info:
        ds.parse_builtin("moons", n_samples=100, max_cells=199)
    assert info.value.kind == "size"


# --- CSV ---------------------------------------------------------------------------------

def csv_bytes(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def test_csv_happy_path_with_string_labels():
    data = '\ufeffx1,label,x2\r\n1,cat,2\r\n3,"dog, big",4\r\n\r\n5, cat ,6e-1\r\n'
    p = ds.parse_csv(csv_bytes(data), "label", max_cells=BIG)
    assert p.X.tolist() == [[1, 2], [3, 4], [5, 0.6]]
    assert p.classes == ["cat", "dog, big"] and p.y.tolist() == [0, 1, 0]


def test_csv_numeric_labels_follow_the_json_rules():
    p = ds.parse_csv(csv_bytes("a,y\n1,1\n2,0\n3,1\n"), "y", max_cells=BIG)
    assert p.task == "classification" and p.classes == ["0", "1"]
    p = ds.parse_csv(csv_bytes("a,y\n1,0.5\n2,1.5\n"), "y", max_cells=BIG)
    assert p.task == "regression" and p.y.tolist() == [[0.5], [1.5]]
    p = ds.parse_csv(csv_bytes("a,y\n1,1\n2,0\n"), "y", task="regression", max_cells=BIG)
    assert p.task == "regression"


def test_csv_and_json_of_the_same_data_share_a_hash():
    from_csv = ds.parse_csv(csv_bytes("a,b,y\n1,2,x\n3,4,z\n"), "y", max_cells=BIG)
    from_json = ds.parse_json([[1, 2], [3, 4]], ["x", "z"])
    assert ds.encode(from_csv) == ds.encode(from_json)


def test_csv_invalid_utf8_names_its_line():
    data = b"a,y\n1,x\n2,\xff\xfe\n"
    raises_invalid(ds.parse_csv, io.BytesIO(data), "y", max_cells=BIG, field="csv line 3",
                   text="UTF-8")


def test_csv_missing_target_lists_the_columns():
    raises_invalid(ds.parse_csv, csv_bytes("x1,x2,label\n1,2,a\n"), "class", max_cells=BIG,
                   field="target", text="'x1', 'x2', 'label'")


@pytest.mark.parametrize("cell, text", [("abc", "'abc' is not a number"), ("", "missing value"),
                                        ("nan", "not a finite number"),
                                        ("-inf", "not a finite number")])
def test_csv_bad_cells_name_line_and_column(cell, text):
    data = f"x1,x2,y\n1,2,a\n3,4,b\n5,6,a\n7,8,b\n9,10,a\n11,{cell},b\n"
    raises_invalid(ds.parse_csv, csv_bytes(data), "y", max_cells=BIG,
                   field="csv line 7, column 'x2'", text=text)


def test_csv_nan_label_names_the_target_column():
    raises_invalid(ds.parse_csv, csv_bytes("x,y\n1,0.5\n2,nan\n"), "y", max_cells=BIG,
                   field="csv line 3, column 'y'", text="not a finite number")


def test_csv_ragged_row():
    raises_invalid(ds.parse_csv, csv_bytes("x1,x2,y\n1,2,a\n3,b\n"), "y", max_cells=BIG,
                   field="csv line 3", text="has 2 values; expected 3 (ragged rows)")


def test_csv_string_labels_with_regression_is_an_error():
    raises_invalid(ds.parse_csv, csv_bytes("x,y\n1,a\n2,b\n"), "y", task="regression",
                   max_cells=BIG, field="column 'y'", text="regression targets must be numbers")


@pytest.mark.parametrize("data, field, text", [
    ("", "file", "header row is required"),
    ("x,y\n", "file", "no data rows"),
    ("y\n1\n2\n", "file", "no feature columns"),
    ("x,y,y\n1,2,3\n", "target", "more than once"),
    ('x,y\n1,"a\n', "file", "malformed CSV"),
])
def test_csv_structural_errors(data, field, text):
    raises_invalid(ds.parse_csv, csv_bytes(data), "y", max_cells=BIG, field=field, text=text)


def test_csv_too_many_cells_is_a_size_limit():
    data = "a,b,y\n" + "1,2,x\n3,4,z\n" * 5
    with pytest.raises(LimitExceeded) as info:
        ds.parse_csv(csv_bytes(data), "y", max_cells=19)
    assert info.value.limit == "max_dataset_cells" and info.value.kind == "size"
    assert ds.parse_csv(csv_bytes(data), "y", max_cells=20).n_samples == 10


def test_csv_header_wider_than_the_limit_is_refused():
    with pytest.raises(LimitExceeded) as info:
        ds.parse_csv(csv_bytes("a,b,c,d,y\n1,2,3,4,x\n"), "y", max_cells=4)
    assert info.value.kind == "size"


def test_csv_huge_header_is_refused_without_reading_it_all():
    stream = io.BytesIO(b"c," * 5_000_000 + b"y\n1,x\n")
    with pytest.raises(LimitExceeded):
        ds.parse_csv(stream, "y", max_cells=1000)
    assert stream.tell() < 1_000_000


def test_csv_huge_data_line_is_refused_as_ragged_without_reading_it_all():
    stream = io.BytesIO(b"a,y\n" + b"1," * 5_000_000 + b"x\n")
    raises_invalid(ds.parse_csv, stream, "y", max_cells=BIG, field="csv line 2",
                   text="ragged rows")
    assert stream.tell() < 1_000_000


def test_csv_leaves_the_callers_stream_open():
    stream = csv_bytes("x,y\n1,a\n2,b\n")
    ds.parse_csv(stream, "y", max_cells=BIG)
    assert not stream.closed


# --- .npz --------------------------------------------------------------------------------

def npz(**arrays) -> io.BytesIO:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    return buf


def test_npz_keeps_float32_and_parses_string_labels():
    X = np.arange(6, dtype=np.float32).reshape(3, 2)
    p = ds.parse_npz(npz(X=X, y=np.array(["b", "a", "b"])), max_cells=BIG)
    assert p.X.dtype == np.float32 and np.array_equal(p.X, X)
    assert p.classes == ["a", "b"] and p.y.tolist() == [1, 0, 1]


def test_npz_integer_features_become_float64_and_2d_targets_regression():
    p = ds.parse_npz(npz(X=np.arange(6).reshape(3, 2), y=np.ones((3, 2)) * [1, 2.5]),
                     max_cells=BIG)
    assert p.X.dtype == np.float64 and p.task == "regression" and p.y.shape == (3, 2)


def test_npz_integer_and_boolean_targets():
    X = np.zeros((4, 1))
    assert ds.parse_npz(npz(X=X, y=np.array([0, 2, 2, 0])), max_cells=BIG).classes == ["0", "2"]
    p = ds.parse_npz(npz(X=X, y=np.array([True, False, True, True])), max_cells=BIG)
    assert p.classes == ["false", "true"]


def test_npz_with_compression_is_accepted():
    buf = io.BytesIO()
    np.savez_compressed(buf, X=np.ones((4, 2)), y=np.array([0.5, 1, 2, 3]))
    buf.seek(0)
    assert ds.parse_npz(buf, max_cells=BIG).task == "regression"


def _npz_with_y_member(*, compression=zipfile.ZIP_STORED, encrypted=False) -> io.BytesIO:
    """An .npz whose y.npy member uses ``compression``, or carries the encryption flag
    (set by hand in both of its headers: zipfile never writes it)."""
    whole = npz(X=np.ones((4, 2)), y=np.arange(4.0)).getvalue()
    with zipfile.ZipFile(io.BytesIO(whole)) as zf:
        x, y = zf.read("X.npy"), zf.read("y.npy")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("X.npy", x)
        zf.writestr("y.npy", y, compress_type=compression)
        local = zf.getinfo("y.npy").header_offset
    data = bytearray(buf.getvalue())
    if encrypted:
        central = data.rindex(b"PK\x01\x02", 0, data.rindex(b"y.npy"))
        data[local + 6] |= 0x1     # local file header: general purpose flags
        data[central + 8] |= 0x1   # central directory entry: the same flags
    return io.BytesIO(bytes(data))


def test_npz_members_numpy_does_not_write_are_refused_by_name():
    raises_invalid(ds.parse_npz, _npz_with_y_member(compression=zipfile.ZIP_BZIP2),
                   max_cells=BIG, field="file", text="compression method 12")
    # The encryption bit alone makes zipfile ask for a password (a RuntimeError).
    raises_invalid(ds.parse_npz, _npz_with_y_member(encrypted=True), max_cells=BIG,
                   field="file", text="'y' is encrypted")


def test_npz_pickled_object_arrays_are_refused():
    objects = np.array([{"a": 1}, None, 3], dtype=object)
    raises_invalid(ds.parse_npz, npz(X=np.zeros((3, 1)), y=objects), max_cells=BIG,
                   field="file", text="pickled or object arrays are refused")


def test_plain_npy_is_refused_even_if_pickled():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    buf.seek(0)
    raises_invalid(ds.parse_npz, buf, max_cells=BIG, field="file",
                   text="plain .npy array is not accepted")


def test_raw_pickle_is_refused():
    import pickle  # only to produce the hostile input

    raises_invalid(ds.parse_npz, io.BytesIO(pickle.dumps({"X": [1]})), max_cells=BIG,
                   field="file", text="not an .npz")


def test_zip_bomb_is_refused_from_the_declared_size():
    buf = io.BytesIO()
    np.savez_compressed(buf, X=np.zeros((2000, 100)), y=np.zeros(2000))  # 1.6 MB inflated
    assert len(buf.getvalue()) < 50_000
    buf.seek(0)
    with pytest.raises(LimitExceeded) as info:
        ds.parse_npz(buf, max_cells=10_000)
    assert info.value.kind == "size" and info.value.limit == "max_dataset_cells"


def test_zip_bomb_in_labels_is_refused_even_when_the_cell_count_is_small():
    buf = io.BytesIO()
    np.savez_compressed(buf, X=np.zeros((50, 1)), y=np.array(["a" * 100_000] * 50))  # 20 MB
    assert len(buf.getvalue()) < 100_000
    buf.seek(0)
    with pytest.raises(LimitExceeded) as info:
        ds.parse_npz(buf, max_cells=1000)
    assert info.value.kind == "size" and "'y' would decompress to 20000128 bytes" in str(
        info.value)


def test_npz_header_claiming_more_data_than_the_member_holds_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**3)})
        zf.writestr("X.npy", header.getvalue() + b"\0" * 64)
        y = io.BytesIO()
        np.save(y, np.zeros(3))
        zf.writestr("y.npy", y.getvalue())
    buf.seek(0)
    raises_invalid(ds.parse_npz, buf, max_cells=10**18, field="file", text="truncated")


@pytest.mark.parametrize("arrays, field, text", [
    ({"X": np.zeros((3, 2))}, "file", "must contain arrays 'X' and 'y'"),
    ({"X": np.zeros(3), "y": np.zeros(3)}, "X", "2-D"),
    ({"X": np.zeros((0, 2)), "y": np.zeros(0)}, "X", "has no rows"),
    ({"X": np.zeros((3, 0)), "y": np.zeros(3)}, "X", "has no columns"),
    ({"X": np.zeros((3, 2), dtype=bool), "y": np.zeros(3)}, "X", "numeric"),
    ({"X": np.zeros((3, 2)), "y": np.zeros(4)}, "y", "has 4 entries but X has 3 rows"),
    ({"X": np.zeros((3, 2)), "y": np.zeros((3, 1, 1))}, "y", "1-D"),
    ({"X": np.array([[0, 1], [2, np.inf]]), "y": np.array([0, 1])}, "X[1][1]", "finite"),
    ({"X": np.zeros((2, 2)), "y": np.array([0.5, np.nan])}, "y[1]", "finite"),
    ({"X": np.zeros((2, 2)), "y": np.array([b"a", b"b"])}, "y", "unicode strings"),
])
def test_npz_errors(arrays, field, text):
    raises_invalid(ds.parse_npz, npz(**arrays), max_cells=BIG, field=field, text=text)


def test_npz_cell_limit_is_checked_from_the_header():
    with pytest.raises(LimitExceeded) as info:
        ds.parse_npz(npz(X=np.zeros((10, 3)), y=np.zeros(10)), max_cells=29)
    assert info.value.kind == "size"


def test_garbage_zip_is_refused():
    raises_invalid(ds.parse_npz, io.BytesIO(b"PK\x03\x04" + b"\0" * 100), max_cells=BIG,
                   field="file")


# --- canonical encoding ------------------------------------------------------------------

def test_encode_is_deterministic_and_round_trips():
    a = ds.parse_json(grid(5, 2), ["a", "b", "a", "b", "a"])
    b = ds.parse_json(grid(5, 2), ["a", "b", "a", "b", "a"])
    data, sha = ds.encode(a)
    assert ds.encode(b) == (data, sha)
    assert sha == hashlib.sha256(data).hexdigest()
    X, y = ds.decode(data)
    assert np.array_equal(X, a.X) and np.array_equal(y, a.y) and y.dtype == np.int64
    c = ds.parse_json(grid(5, 2), ["a", "b", "a", "b", "b"])
    assert ds.encode(c)[1] != sha


def test_encode_is_stable_across_time(monkeypatch):
    import time

    p = ds.parse_json(grid(2, 2), ["a", "b"])
    first = ds.encode(p)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)
    assert ds.encode(p) == first


def test_encoded_blob_is_a_plain_npz():
    p = ds.parse_npz(npz(X=np.ones((2, 2), np.float32), y=np.array([0.5, 1.5])), max_cells=BIG)
    with np.load(io.BytesIO(ds.encode(p)[0]), allow_pickle=False) as f:
        assert sorted(f.files) == ["X", "y"] and f["X"].dtype == np.float32


# --- dataset rows ------------------------------------------------------------------------

QUOTA = 10**9


def make(session, store, owner, parsed=None, name="data", quota=QUOTA, source="json"):
    parsed = parsed or ds.parse_json(grid(4, 2), ["a", "b", "a", "b"])
    return ds.create_dataset(session, store, owner_id=owner.id, name=name, parsed=parsed,
                             source=source, max_storage_bytes=quota)


def blob_files(store) -> list:
    root = store.root / "datasets"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_create_dataset_stores_blob_and_row(session, store, user):
    owner = user()
    parsed = ds.parse_json(grid(4, 2), ["a", "b", "a", "c"])
    row = make(session, store, owner, parsed, name="my data")
    data, sha = ds.encode(parsed)
    assert (row.sha256, row.size_bytes, row.source) == (sha, len(data), "json")
    assert (row.n_samples, row.n_features, row.n_outputs) == (4, 2, 3)
    assert row.task == "classification" and row.classes == ["a", "b", "c"]
    assert store.read(sha) == data
    X, y = ds.load_arrays(store, row)
    assert np.array_equal(X, parsed.X) and np.array_equal(y, parsed.y)


def test_create_dataset_does_not_commit(session, session_factory, store, user):
    owner = user()
    session.commit()
    row = make(session, store, owner)
    with session_factory() as other:
        assert other.get(Dataset, row.id) is None
    session.rollback()
    assert session.get(Dataset, row.id) is None


def test_dataset_to_dict(session, store, user):
    row = make(session, store, user(), name="d1")
    session.commit()
    session.expire_all()  # reload: SQLite hands back naive datetimes
    out = ds.dataset_to_dict(session.get(Dataset, row.id))
    assert set(out) == {"id", "name", "n_samples", "n_features", "n_outputs", "task",
                        "classes", "sha256", "size_bytes", "source", "created_at"}
    assert out["id"] == row.id and out["classes"] == ["a", "b"]
    assert out["created_at"].endswith("Z")
    assert datetime.fromisoformat(out["created_at"]).utcoffset().total_seconds() == 0


def test_regression_dataset_outputs(session, store, user):
    parsed = ds.parse_json(grid(3, 2), [[1, 2, 3], [4, 5, 6], [7, 8, 9.5]])
    row = make(session, store, user(), parsed)
    assert (row.task, row.n_outputs, row.classes) == ("regression", 3, None)


def test_same_content_is_stored_once_and_survives_one_delete(session, store, user):
    ann, bob = user(), user()
    a = make(session, store, ann, name="ann's")
    b = make(session, store, bob, name="bob's")
    session.commit()
    assert a.sha256 == b.sha256 and a.id != b.id
    assert blob_files(store) == [store.path(a.sha256)]

    ds.delete_dataset(session, store, ann.id, a.id)
    session.commit()
    assert store.exists(b.sha256)
    assert ds.load_arrays(store, b)[0].shape == (4, 2)

    ds.delete_dataset(session, store, bob.id, b.id)
    assert store.exists(b.sha256)  # not before the commit
    session.commit()
    assert not store.exists(b.sha256)
    assert session.scalars(select(Dataset)).all() == []


def test_rolled_back_delete_keeps_row_and_blob(session, store, user):
    owner = user()
    row = make(session, store, owner)
    session.commit()
    ds.delete_dataset(session, store, owner.id, row.id)
    session.rollback()
    assert store.exists(row.sha256)
    assert ds.get_dataset(session, owner.id, row.id).id == row.id
    session.commit()  # a later commit must not act on the abandoned delete
    assert store.exists(row.sha256)


def test_delete_undone_by_a_savepoint_keeps_the_blob(session, store, user):
    owner = user()
    row = make(session, store, owner)
    session.commit()
    savepoint = session.begin_nested()
    ds.delete_dataset(session, store, owner.id, row.id)
    savepoint.rollback()
    session.commit()  # the blob deletion re-checks the committed rows first
    assert store.exists(row.sha256)
    assert ds.get_dataset(session, owner.id, row.id).id == row.id


def test_reupload_after_delete_in_one_transaction_keeps_the_blob(session, store, user):
    owner = user()
    row = make(session, store, owner)
    session.commit()
    ds.delete_dataset(session, store, owner.id, row.id)
    again = make(session, store, owner, name="again")
    session.commit()  # the deferred blob deletion sees the new row and keeps the blob
    assert again.sha256 == row.sha256 and store.exists(row.sha256)
    assert ds.load_arrays(store, again)[0].shape == (4, 2)


def test_owner_isolation(session, store, user):
    ann, bob = user(), user()
    row = make(session, store, ann)
    with pytest.raises(NotFound) as other:
        ds.get_dataset(session, bob.id, row.id)
    with pytest.raises(NotFound) as missing:
        ds.get_dataset(session, bob.id, "no-such-id")
    assert str(other.value) == str(missing.value)
    assert other.value.details == missing.value.details
    with pytest.raises(NotFound):
        ds.delete_dataset(session, store, bob.id, row.id)
    assert ds.list_datasets(session, bob.id) == []
    assert ds.get_dataset(session, ann.id, row.id) is row


def test_list_is_newest_first_and_pages(session, store, user):
    owner = user()
    rows = [make(session, store, owner, name=f"d{i}") for i in range(5)]
    for i, row in enumerate(rows):  # distinct, known creation times
        row.created_at = datetime(2026, 1, 1 + i)
    session.flush()
    names = [d.name for d in ds.list_datasets(session, owner.id, limit=10, offset=0)]
    assert names == ["d4", "d3", "d2", "d1", "d0"]
    page = ds.list_datasets(session, owner.id, limit=2, offset=1)
    assert [d.name for d in page] == ["d3", "d2"]


@pytest.mark.parametrize("kwargs, field", [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                                           ({"offset": -1}, "offset")])
def test_list_rejects_bad_paging(session, user, kwargs, field):
    raises_invalid(ds.list_datasets, session, user().id, field=field, **kwargs)


def add_job(session, owner, dataset, status):
    job = Job(owner_id=owner.id, dataset_id=dataset.id, status=status, spec={}, epochs=1)
    session.add(job)
    session.flush()
    return job


@pytest.mark.parametrize("status", ACTIVE_STATUSES)
def test_delete_conflicts_with_an_active_job(session, store, user, status):
    owner = user()
    row = make(session, store, owner)
    job = add_job(session, owner, row, status)
    with pytest.raises(Conflict) as info:
        ds.delete_dataset(session, store, owner.id, row.id)
    assert dict(info.value.details)["dataset_id"] == f"job {job.id} is {status}"
    assert ds.get_dataset(session, owner.id, row.id) is row


@pytest.mark.parametrize("status", FINISHED_STATUSES)
def test_delete_with_finished_jobs_detaches_them(session, store, user, status):
    owner = user()
    row = make(session, store, owner)
    job = add_job(session, owner, row, status)
    session.commit()
    ds.delete_dataset(session, store, owner.id, row.id)
    session.commit()
    session.expire_all()
    assert session.get(Job, job.id).dataset_id is None
    assert not store.exists(row.sha256)


def test_quota_counts_existing_datasets(session, store, user):
    owner = user()
    first = make(session, store, owner)
    size = first.size_bytes
    other = ds.parse_json(grid(4, 2), ["a", "b", "b", "b"])
    other_size = len(ds.encode(other)[0])
    with pytest.raises(LimitExceeded) as info:
        make(session, store, owner, other, quota=size + other_size - 1)
    assert info.value.limit == "max_storage_bytes_per_user" and info.value.kind == "quota"
    assert info.value.value == size + other_size - 1
    assert not store.exists(ds.encode(other)[1])  # nothing written when refused
    make(session, store, owner, other, quota=size + other_size)  # exactly fits


def test_quota_is_per_user(session, store, user):
    ann, bob = user(), user()
    row = make(session, store, ann)
    make(session, store, bob, quota=row.size_bytes)


@pytest.mark.parametrize("name, text", [("", "1 to 200"), ("x" * 201, "1 to 200"),
                                        ("   ", "blank"), ("a\nb", "control"),
                                        ("a\x00", "control"), ("a\x7f", "control")])
def test_bad_names(session, store, user, name, text):
    raises_invalid(make, session, store, user(), name=name, field="name", text=text)


def test_name_of_200_characters_and_unicode_is_fine(session, store, user):
    assert make(session, store, user(), name="ü" * 200).name == "ü" * 200


def test_unknown_source_is_refused(session, store, user):
    raises_invalid(make, session, store, user(), source="ftp", field="source")


@pytest.mark.parametrize("source", ["json", "builtin", "csv", "npz"])
def test_known_sources(session, store, user, source):
    assert make(session, store, user(), source=source).source == source


def test_load_arrays_detects_a_mismatched_blob(session, store, user):
    row = make(session, store, user())
    row.n_samples = 5
    with pytest.raises(CorruptBlob):
        ds.load_arrays(store, row)


def test_an_upload_parsed_into_scratch_is_stored_and_loaded_as_a_memory_map(session, store,
                                                                             user):
    X = np.random.default_rng(1).standard_normal((50, 3)).astype(np.float32)
    with store.scratch() as scratch:
        parsed = ds.parse_npz(npz(X=X, y=np.arange(50) % 2), max_cells=BIG, scratch=scratch)
        row = ds.create_dataset(session, store, owner_id=user().id, name="big", parsed=parsed,
                                source="npz", max_storage_bytes=QUOTA, scratch=scratch)
    assert row.sha256 == ds.encode(ds.parse_npz(npz(X=X, y=np.arange(50) % 2),
                                                max_cells=BIG))[1]
    assert list((store.root / ".scratch").iterdir()) == []
    loaded, y = ds.load_arrays(store, row)
    assert np.array_equal(loaded, X) and loaded.dtype == np.float32
    assert not loaded.flags.writeable and isinstance(loaded.base, np.memmap)


def test_load_arrays_detects_a_corrupted_blob(session, store, user):
    row = make(session, store, user())
    store.path(row.sha256).write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(CorruptBlob):
        ds.load_arrays(store, row)
