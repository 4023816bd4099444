"""Turn uploads (JSON, CSV, .npz) and built-in generators into one normalised `ParsedDataset`.

Everything a user sends is validated here once, with errors naming the row/column at fault,
so training code can trust the arrays: X is finite float64 (float32 kept from an .npz),
y is int64 class indices or a 2-D float64 regression target.

Task inference, when no `task` is given (an explicit task overrides it):
  * string or boolean labels                   -> classification
  * one row of numbers per sample (2-D y)      -> regression
  * integral numbers, at most 20 distinct      -> classification
  * any other numbers                          -> regression
`task="regression"` with string/boolean labels and `task="classification"` with
non-integral numbers are errors. Classes are the sorted distinct labels (numbers sorted
numerically and rendered as "0", "1", ...); classification needs at least two.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import math
import zipfile
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from jobs.errors import InvalidInput, LimitExceeded

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)
BUILTINS = ("xor", "moons", "circles", "spirals", "blobs")
MAX_INFERRED_CLASSES = 20
# Defensive caps: a label column with a million distinct values is a mistake, not classes.
MAX_CLASSES = 10_000
MAX_LABEL_CHARS = 200

# Names a field for an error: where() is the whole target, where(i) an entry, where(i, j) a cell.
Where = Callable[..., str]


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", [(field, message)])


def _too_many_cells(n: int, d: int, max_cells: int, field: str) -> LimitExceeded:
    return LimitExceeded("max_dataset_cells", max_cells,
                         f"dataset has {n} x {d} = {n * d} cells; the limit is {max_cells}",
                         kind="size", field=field)


def _check_cells(n: int, d: int, max_cells: int | None, field: str) -> None:
    if max_cells is not None and n * d > max_cells:
        raise _too_many_cells(n, d, max_cells, field)


def _check_task(task: str | None) -> str | None:
    if task is not None and task not in TASKS:
        raise _invalid("task", "must be 'classification' or 'regression'")
    return task


@dataclass(frozen=True, eq=False)
class ParsedDataset:
    """A validated dataset; the constructor re-checks the invariants listed in the module."""

    X: np.ndarray
    y: np.ndarray
    task: str
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        _check_invariants(self)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_outputs(self) -> int:
        if self.task == CLASSIFICATION:
            return len(self.classes or [])
        return int(self.y.shape[1])


def _check_invariants(p: ParsedDataset) -> None:
    # ValueError, not InvalidInput: a violation here is a bug in a parser or the engine.
    X, y = p.X, p.y
    if X.ndim != 2 or X.dtype not in (np.float32, np.float64) or 0 in X.shape:
        raise ValueError("X must be a non-empty 2-D float32/float64 array")
    if p.task == CLASSIFICATION:
        ok = (y.ndim == 1 and y.dtype == np.int64 and p.classes is not None
              and len(p.classes) >= 2 and all(isinstance(c, str) for c in p.classes)
              and int(y.min()) >= 0 and int(y.max()) < len(p.classes))
    elif p.task == REGRESSION:
        ok = y.ndim == 2 and y.dtype == np.float64 and y.shape[1] >= 1 and p.classes is None
    else:
        ok = False
    if not ok or y.shape[0] != X.shape[0]:
        raise ValueError("y, task and classes are inconsistent with each other or with X")


# --- targets (shared by every format) ----------------------------------------------------

Target = tuple[np.ndarray, str, list[str] | None]


def _first_true(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _classes_target(index: np.ndarray, classes: list[str], where: Where) -> Target:
    if len(classes) < 2:
        raise _invalid(where(), f"classification needs at least 2 classes; found only "
                                f"{classes[0]!r} (pass task 'regression' for a numeric target)")
    if len(classes) > MAX_CLASSES:
        raise _invalid(where(), f"has {len(classes)} classes; at most {MAX_CLASSES} are allowed")
    return index.astype(np.int64), CLASSIFICATION, classes


def _numeric_target(values: np.ndarray, task: str | None, where: Where) -> Target:
    """One number per sample (float64, shape (n,))."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise _invalid(where(*_first_true(bad)), "not a finite number")
    integral = np.floor(values) == values
    uniq, index = np.unique(values, return_inverse=True)
    if task is None:
        inferred = integral.all() and uniq.size <= MAX_INFERRED_CLASSES
        task = CLASSIFICATION if inferred else REGRESSION
    if task == REGRESSION:
        return values.reshape(-1, 1), REGRESSION, None
    if not integral.all():
        (i,) = _first_true(~integral)
        raise _invalid(where(i), f"classification labels must be integers or strings; "
                                 f"got {float(values[i])!r}")
    return _classes_target(index, [str(int(v)) for v in uniq], where)


def _matrix_target(values: np.ndarray, task: str | None, where: Where) -> Target:
    """Rows of numbers per sample (float64, shape (n, k)): regression unless k == 1."""
    if task == CLASSIFICATION:
        if values.shape[1] != 1:
            raise _invalid(where(), f"classification needs one label per row; "
                                    f"got {values.shape[1]} columns")
        return _numeric_target(values[:, 0], task, where)
    bad = ~np.isfinite(values)
    if bad.any():
        raise _invalid(where(*_first_true(bad)), "not a finite number")
    return values, REGRESSION, None


def _string_target(labels: list[str], task: str | None, where: Where) -> Target:
    if task == REGRESSION:
        raise _invalid(where(), "regression targets must be numbers; got string labels "
                                "(use task 'classification')")
    for i, label in enumerate(labels):
        if not label.strip():
            raise _invalid(where(i), "missing label (empty string)")
        if len(label) > MAX_LABEL_CHARS:
            raise _invalid(where(i), f"label is longer than {MAX_LABEL_CHARS} characters")
    classes = sorted(set(labels))
    position = {c: k for k, c in enumerate(classes)}
    index = np.fromiter((position[s] for s in labels), dtype=np.int64, count=len(labels))
    return _classes_target(index, classes, where)


def _bool_target(flags: np.ndarray, task: str | None, where: Where) -> Target:
    if task == REGRESSION:
        raise _invalid(where(), "regression targets must be numbers; got booleans "
                                "(use task 'classification')")
    if np.unique(flags).size < 2:
        only = "true" if bool(flags[0]) else "false"
        return _classes_target(flags.astype(np.int64), [only], where)  # raises: one class
    return _classes_target(flags.astype(np.int64), ["false", "true"], where)


# --- JSON --------------------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    # `type(...) is`, not isinstance: bool is a subclass of int and must not pass.
    return type(v) is float or type(v) is int


def _bad_cell_message(v: Any) -> str:
    if isinstance(v, bool):
        return "booleans are not accepted as numbers"
    if isinstance(v, (list, dict)):
        return "nested too deep; expected a number"
    if isinstance(v, str):
        return f"not a finite number (got the string {v[:20]!r})"
    if v is None:
        return "not a finite number (got null)"
    return "not a finite number"


def _json_matrix(rows: Any, name: str, max_cells: int | None = None) -> np.ndarray:
    """A list of equal-length rows of finite numbers as float64 (n, d)."""
    if not isinstance(rows, list):
        raise _invalid(name, "must be a list of rows (lists of numbers)")
    if not rows:
        raise _invalid(name, "has no rows")
    if not isinstance(rows[0], list):
        raise _invalid(f"{name}[0]", "must be a list of numbers")
    d = len(rows[0])
    if d == 0:
        raise _invalid(name, "has no columns")
    _check_cells(len(rows), d, max_cells, name)
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise _invalid(f"{name}[{i}]", "must be a list of numbers")
        if len(row) != d:
            raise _invalid(f"{name}[{i}]",
                           f"row {i} has {len(row)} values; expected {d} (ragged rows)")
        if not all(_is_number(v) for v in row):
            j = next(j for j, v in enumerate(row) if not _is_number(v))
            raise _invalid(f"{name}[{i}][{j}]", _bad_cell_message(row[j]))
    try:
        matrix = np.array(rows, dtype=np.float64)
    except OverflowError:  # an int beyond float64's range
        matrix = np.array([[_float_or_inf(v) for v in row] for row in rows])
    bad = ~np.isfinite(matrix)
    if bad.any():
        i, j = _first_true(bad)
        raise _invalid(f"{name}[{i}][{j}]", "not a finite number")
    return matrix


def _float_or_inf(v: int | float) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf


def _y_where(i: int | None = None, j: int | None = None) -> str:
    if i is None:
        return "y"
    return f"y[{i}]" if j is None else f"y[{i}][{j}]"


def _json_kind(v: Any, i: int) -> str:
    if isinstance(v, bool):
        return "boolean"
    if _is_number(v):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "row"
    if v is None:
        raise _invalid(f"y[{i}]", "missing label (null)")
    raise _invalid(f"y[{i}]", "must be a number, string, boolean or list of numbers")


def _json_target(y: list, task: str | None) -> Target:
    kind = _json_kind(y[0], 0)
    for i, v in enumerate(y):
        if _json_kind(v, i) != kind:
            raise _invalid(f"y[{i}]", f"is a {_json_kind(v, i)} but y[0] is a {kind}; "
                                      "all labels must be of one kind")
    if kind == "string":
        return _string_target(y, task, _y_where)
    if kind == "boolean":
        return _bool_target(np.array(y, dtype=bool), task, _y_where)
    if kind == "row":
        return _matrix_target(_json_matrix(y, "y"), task, _y_where)
    return _numeric_target(np.array([_float_or_inf(v) for v in y]), task, _y_where)


def parse_json(X: Any, y: Any, task: str | None = None, *,
               max_cells: int | None = None) -> ParsedDataset:
    """Parse `X` (list of rows of numbers) and `y` (labels, numbers or rows of numbers)."""
    task = _check_task(task)
    features = _json_matrix(X, "X", max_cells)
    n = features.shape[0]
    if not isinstance(y, list):
        raise _invalid("y", "must be a list with one entry per row of X")
    if len(y) != n:
        raise _invalid("y", f"has {len(y)} entries but X has {n} rows")
    target, task, classes = _json_target(y, task)
    return ParsedDataset(features, target, task, classes)


# --- built-in generators -----------------------------------------------------------------

def _int_in_range(field: str, value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _invalid(field, f"must be an integer from {low} to {high}")
    return value


def _float_in_range(field: str, value: Any, low: float, high: float) -> float:
    if not _is_number(value) or not math.isfinite(value) or not low <= value <= high:
        raise _invalid(field, f"must be a finite number from {low} to {high}")
    return float(value)


def parse_builtin(name: str, n_samples: int = 200, noise: float | None = None, seed: int = 0,
                  *, max_cells: int | None = None) -> ParsedDataset:
    """Generate one of BUILTINS with the engine's `mlp.datasets.make` (always classification).

    `noise=None` takes the engine's per-dataset default; "xor" is always its four points.
    """
    if not isinstance(name, str) or name not in BUILTINS:
        raise _invalid("builtin", f"unknown built-in dataset {name!r}; "
                                  f"choose one of: {', '.join(BUILTINS)}")
    n = _int_in_range("n_samples", n_samples, 4, 1_000_000)
    if noise is not None:
        noise = _float_in_range("noise", noise, 0.0, 10.0)
    seed = _int_in_range("seed", seed, 0, 2**32 - 1)
    from mlp import datasets as engine  # imported late: the engine is heavy and optional here
    X, labels, classes = engine.make(name, n_samples=n, noise=noise, seed=seed)
    features = np.asarray(X, dtype=np.float64)
    _check_cells(*features.shape, max_cells, "n_samples")
    return ParsedDataset(features, np.asarray(labels, dtype=np.int64), CLASSIFICATION,
                         [str(c) for c in classes])


# --- CSV ---------------------------------------------------------------------------------

_CHUNK_BYTES = 64 * 1024
_AVG_FIELD_CHARS = 1024  # a line may average at most this many characters per field


class _Lines:
    """Physical lines of a binary stream, decoded as UTF-8 one line at a time (so an
    encoding error names its line) and refused before they can explode into fields.

    Commas + 1 bound the number of fields (quoted commas only make it conservative), so a
    line with a million columns is refused after its first chunk, not after csv splits it.
    """

    def __init__(self, stream: BinaryIO, max_fields: int,
                 too_many: Callable[[int], Exception]):
        self.stream, self.max_fields, self.too_many = stream, max_fields, too_many
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.line_no = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        parts: list[str] = []
        commas = size = 0
        while not parts or not parts[-1].endswith("\n"):
            raw = self.stream.readline(_CHUNK_BYTES)
            text = self._decode(raw)
            if not raw:
                break
            parts.append(text)
            commas += raw.count(b",")
            size += len(text)
            if commas + 1 > self.max_fields:
                raise self.too_many(self.line_no + 1)
            if size > (commas + 1) * _AVG_FIELD_CHARS:
                raise _invalid(f"csv line {self.line_no + 1}", "line is too long for its "
                               f"number of values (over {_AVG_FIELD_CHARS} characters each)")
        if not parts:
            raise StopIteration
        self.line_no += 1
        line = "".join(parts)
        return line.removeprefix("\ufeff") if self.line_no == 1 else line

    def _decode(self, raw: bytes) -> str:
        try:
            return self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError:
            raise _invalid(f"csv line {self.line_no + 1}", "not valid UTF-8") from None


def _csv_cell_error(line: int, column: str, cell: str) -> InvalidInput:
    field = f"csv line {line}, column {column!r}"
    if not cell.strip():
        return _invalid(field, "missing value")
    try:
        float(cell)
    except ValueError:
        return _invalid(field, f"{cell[:40]!r} is not a number")
    return _invalid(field, "not a finite number")


def _csv_target(labels: list[str], lines: list[int], column: str, task: str | None) -> Target:
    def where(i: int | None = None, j: int | None = None) -> str:
        return f"column {column!r}" if i is None else f"csv line {lines[i]}, column {column!r}"

    try:
        numbers = [float(s) for s in labels]
    except ValueError:  # not all numeric: the labels are names
        return _string_target(labels, task, where)
    return _numeric_target(np.array(numbers, dtype=np.float64), task, where)


def _csv_header(reader: Any, target: str, max_cells: int) -> tuple[list[str], int]:
    header = next(reader, None)
    if header is None:
        raise _invalid("file", "the CSV file is empty; a header row is required")
    header = [h.strip() for h in header]
    if len(header) > max_cells:
        raise LimitExceeded("max_dataset_cells", max_cells, f"the CSV header has {len(header)} "
                            f"columns; the limit is {max_cells} cells", kind="size", field="file")
    if header.count(target) != 1:
        problem = "appears more than once" if target in header else "not found"
        listed = ", ".join(repr(h) for h in header[:50]) + (" ..." if len(header) > 50 else "")
        raise _invalid("target", f"column {target!r} {problem}; the columns are: {listed}")
    if len(header) < 2:
        raise _invalid("file", "the CSV has no feature columns besides the target")
    return header, header.index(target)


def _parse_csv_stream(stream: BinaryIO, target: str, task: str | None,
                      max_cells: int) -> ParsedDataset:
    def header_too_wide(line: int) -> Exception:
        return LimitExceeded("max_dataset_cells", max_cells, f"the CSV header has more than "
                             f"{max_cells} columns", kind="size", field="file")

    # The header bound is loose (quoted commas); the exact check follows once it is parsed.
    lines = _Lines(stream, 2 * max_cells + 1024, header_too_wide)
    reader = csv.reader(lines, strict=True)
    header, t = _csv_header(reader, target, max_cells)
    ncols, d = len(header), len(header) - 1
    names = header[:t] + header[t + 1:]  # the feature columns, in order
    lines.max_fields = ncols + MAX_LABEL_CHARS  # the target may hold quoted commas
    lines.too_many = lambda line: _invalid(f"csv line {line}",
                                           f"has more than {ncols} values (ragged rows)")
    values, labels, label_lines = _csv_body(reader, t, names, max_cells)
    features = np.frombuffer(values, dtype=np.float64).reshape(len(labels), d)
    y, task, classes = _csv_target(labels, label_lines, target, task)
    return ParsedDataset(features, y, task, classes)


def _csv_body(reader: Any, t: int, names: list[str],
              max_cells: int) -> tuple[array, list[str], list[int]]:
    """The data rows: features packed as doubles, labels and their line numbers."""
    ncols, d = len(names) + 1, len(names)
    values, labels, label_lines = array("d"), [], []
    for row in reader:
        if not row:
            continue  # blank line
        line = reader.line_num
        if len(row) != ncols:
            raise _invalid(f"csv line {line}",
                           f"has {len(row)} values; expected {ncols} (ragged rows)")
        _check_cells(len(labels) + 1, d, max_cells, "file")
        cells = row[:t] + row[t + 1:]
        try:
            numbers = list(map(float, cells))
        except ValueError:
            numbers = [math.nan]
        if not all(map(math.isfinite, numbers)):
            j = next(j for j, c in enumerate(cells) if not _finite_str(c))
            raise _csv_cell_error(line, names[j], cells[j])
        values.extend(numbers)
        labels.append(row[t].strip())
        label_lines.append(line)
    if not labels:
        raise _invalid("file", "the CSV has a header but no data rows")
    return values, labels, label_lines


def _finite_str(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def parse_csv(stream: BinaryIO, target: str, task: str | None = None, *,
              max_cells: int) -> ParsedDataset:
    """Parse a UTF-8 CSV with a header row; `target` names the label column, the others
    must be numeric. The stream is read line by line and left open."""
    task = _check_task(task)
    try:
        return _parse_csv_stream(stream, target, task, max_cells)
    except csv.Error as exc:
        raise _invalid("file", f"malformed CSV: {exc}") from None


# --- .npz --------------------------------------------------------------------------------

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_HEADER_SLACK = 64 * 1024
_PICKLE_REFUSED = "pickled or object arrays are refused"


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a member, read from its header without loading the data."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _invalid("file", f"unsupported .npy format version {version}")
    if dtype.hasobject:
        raise _invalid("file", _PICKLE_REFUSED)
    # read_array allocates prod(shape) items up front, so the header must fit the member.
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise _invalid("file", f"array {info.filename!r} is truncated or has a bad header")
    return shape, dtype


def _npz_members(zf: zipfile.ZipFile, max_cells: int) -> dict[str, tuple]:
    names = {i.filename: i for i in zf.infolist()}
    if "X.npy" not in names or "y.npy" not in names:
        found = ", ".join(sorted(n.removesuffix(".npy") for n in names)) or "nothing"
        raise _invalid("file", f"the .npz must contain arrays 'X' and 'y'; found: {found}")
    # The declared sizes are checked before anything is decompressed (zip bombs), and
    # zipfile never inflates a member past its declared size.
    budget = max_cells * 8 + _NPY_HEADER_SLACK
    headers = {}
    for key in ("X", "y"):
        info = names[f"{key}.npy"]
        if info.file_size > budget:
            raise LimitExceeded("max_dataset_cells", max_cells, f"array {key!r} would "
                                f"decompress to {info.file_size} bytes; at most {budget} "
                                f"are allowed", kind="size", field="file")
        headers[key] = _npy_header(zf, info)
    return headers


def _check_npz_shapes(headers: dict[str, tuple], max_cells: int) -> None:
    (xs, xt), (ys, yt) = headers["X"], headers["y"]
    if len(xs) != 2:
        raise _invalid("X", f"must be a 2-D array; got {len(xs)} dimensions")
    if xs[0] == 0:
        raise _invalid("X", "has no rows")
    if xs[1] == 0:
        raise _invalid("X", "has no columns")
    if xt.kind not in "iuf":
        raise _invalid("X", f"must be a numeric array; got dtype {xt}")
    _check_cells(xs[0], xs[1], max_cells, "X")
    if len(ys) not in (1, 2) or (len(ys) == 2 and ys[1] == 0):
        raise _invalid("y", "must be a 1-D array or a 2-D array with at least one column")
    if ys[0] != xs[0]:
        raise _invalid("y", f"has {ys[0]} entries but X has {xs[0]} rows")
    if yt.kind not in "biufU":
        raise _invalid("y", f"must hold numbers, booleans or unicode strings, not {yt}")


def _npz_target(y: np.ndarray, task: str | None) -> Target:
    if y.dtype.kind == "U":
        if y.ndim != 1:
            raise _invalid("y", "string labels must be a 1-D array")
        return _string_target(y.tolist(), task, _y_where)
    if y.dtype.kind == "b":
        if y.ndim != 1:
            raise _invalid("y", "boolean labels must be a 1-D array")
        return _bool_target(y, task, _y_where)
    values = y.astype(np.float64)
    if values.ndim == 2:
        return _matrix_target(values, task, _y_where)
    return _numeric_target(values, task, _y_where)


def _npz_features(X: np.ndarray) -> np.ndarray:
    features = X.astype(np.float32 if X.dtype == np.float32 else np.float64)
    bad = ~np.isfinite(features)
    if bad.any():
        i, j = _first_true(bad)
        raise _invalid(f"X[{i}][{j}]", "not a finite number")
    return features


def parse_npz(stream: BinaryIO, task: str | None = None, *, max_cells: int) -> ParsedDataset:
    """Parse an .npz archive holding arrays `X` (2-D numeric) and `y` (1-D or 2-D)."""
    task = _check_task(task)
    fileobj = stream if stream.seekable() else io.BytesIO(stream.read())
    start = fileobj.tell()
    magic = fileobj.read(len(_NPY_MAGIC))
    fileobj.seek(start)
    if magic.startswith(_NPY_MAGIC):
        raise _invalid("file", "a plain .npy array is not accepted; upload an .npz with "
                               "arrays X and y (numpy.savez)")
    if not magic.startswith(_ZIP_MAGICS):
        raise _invalid("file", "not an .npz archive; upload one with arrays X and y")
    try:
        with zipfile.ZipFile(fileobj) as zf:
            headers = _npz_members(zf, max_cells)
        _check_npz_shapes(headers, max_cells)
        fileobj.seek(start)
        with np.load(fileobj, allow_pickle=False) as npz:
            X, y = npz["X"], npz["y"]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            NotImplementedError) as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise _invalid("file", _PICKLE_REFUSED) from None
        raise _invalid("file", f"unreadable .npz: {exc}") from None
    target, task, classes = _npz_target(y, task)
    return ParsedDataset(_npz_features(X), target, task, classes)


# --- canonical storage form --------------------------------------------------------------

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def encode(parsed: ParsedDataset) -> tuple[bytes, str]:
    """Canonical .npz bytes (arrays X and y, as numpy.savez lays them out) and their sha256.

    The zip metadata (timestamps, platform) is pinned so equal arrays give equal bytes,
    which is what makes content addressing deduplicate.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in (("X", parsed.X), ("y", parsed.y)):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.create_system = 3
            info.external_attr = 0o644 << 16
            canonical = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, canonical, version=(1, 0), allow_pickle=False)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def decode(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The (X, y) arrays of a blob written by `encode`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return npz["X"], npz["y"]
