"""Datasets sent as JSON arrays, and the built-in toy generators."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from jobs.dataset_targets import (Target, bool_target, matrix_target, numeric_target,
                                  string_target, y_where)
from jobs.dataset_types import (CLASSIFICATION, ParsedDataset, check_cells, check_task,
                                first_true, invalid)

BUILTINS = ("xor", "moons", "circles", "spirals", "blobs")


def is_number(v: Any) -> bool:
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
        raise invalid(name, "must be a list of rows (lists of numbers)")
    if not rows:
        raise invalid(name, "has no rows")
    if not isinstance(rows[0], list):
        raise invalid(f"{name}[0]", "must be a list of numbers")
    d = len(rows[0])
    if d == 0:
        raise invalid(name, "has no columns")
    check_cells(len(rows), d, max_cells, name)
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise invalid(f"{name}[{i}]", "must be a list of numbers")
        if len(row) != d:
            raise invalid(f"{name}[{i}]",
                          f"row {i} has {len(row)} values; expected {d} (ragged rows)")
        if not all(is_number(v) for v in row):
            j = next(j for j, v in enumerate(row) if not is_number(v))
            raise invalid(f"{name}[{i}][{j}]", _bad_cell_message(row[j]))
    try:
        matrix = np.array(rows, dtype=np.float64)
    except OverflowError:  # an int beyond float64's range
        matrix = np.array([[_float_or_inf(v) for v in row] for row in rows])
    bad = ~np.isfinite(matrix)
    if bad.any():
        i, j = first_true(bad)
        raise invalid(f"{name}[{i}][{j}]", "not a finite number")
    return matrix


def _float_or_inf(v: int | float) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf


def _json_kind(v: Any, i: int) -> str:
    if isinstance(v, bool):
        return "boolean"
    if is_number(v):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "row"
    if v is None:
        raise invalid(f"y[{i}]", "missing label (null)")
    raise invalid(f"y[{i}]", "must be a number, string, boolean or list of numbers")


def _json_target(y: list, task: str | None) -> Target:
    kind = _json_kind(y[0], 0)
    for i, v in enumerate(y):
        if _json_kind(v, i) != kind:
            raise invalid(f"y[{i}]", f"is a {_json_kind(v, i)} but y[0] is a {kind}; "
                                     "all labels must be of one kind")
    if kind == "string":
        return string_target(y, task, y_where)
    if kind == "boolean":
        return bool_target(np.array(y, dtype=bool), task, y_where)
    if kind == "row":
        return matrix_target(_json_matrix(y, "y"), task, y_where)
    return numeric_target(np.array([_float_or_inf(v) for v in y]), task, y_where)


def parse_json(X: Any, y: Any, task: str | None = None, *,
               max_cells: int | None = None) -> ParsedDataset:
    """Parse `X` (list of rows of numbers) and `y` (labels, numbers or rows of numbers)."""
    task = check_task(task)
    features = _json_matrix(X, "X", max_cells)
    n = features.shape[0]
    if not isinstance(y, list):
        raise invalid("y", "must be a list with one entry per row of X")
    if len(y) != n:
        raise invalid("y", f"has {len(y)} entries but X has {n} rows")
    target, task, classes = _json_target(y, task)
    return ParsedDataset(features, target, task, classes)


def _int_in_range(field: str, value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise invalid(field, f"must be an integer from {low} to {high}")
    return value


def _float_in_range(field: str, value: Any, low: float, high: float) -> float:
    if not is_number(value) or not math.isfinite(value) or not low <= value <= high:
        raise invalid(field, f"must be a finite number from {low} to {high}")
    return float(value)


def parse_builtin(name: str, n_samples: int = 200, noise: float | None = None, seed: int = 0,
                  *, max_cells: int | None = None) -> ParsedDataset:
    """Generate one of BUILTINS with the engine's `mlp.datasets.make` (always classification).

    `noise=None` takes the engine's per-dataset default; "xor" is always its four points.
    """
    if not isinstance(name, str) or name not in BUILTINS:
        raise invalid("builtin", f"unknown built-in dataset {name!r}; "
                                 f"choose one of: {', '.join(BUILTINS)}")
    n = _int_in_range("n_samples", n_samples, 4, 1_000_000)
    if noise is not None:
        noise = _float_in_range("noise", noise, 0.0, 10.0)
    seed = _int_in_range("seed", seed, 0, 2**32 - 1)
    from mlp import datasets as engine  # imported late: the engine is heavy and optional here
    X, labels, classes = engine.make(name, n_samples=n, noise=noise, seed=seed)
    features = np.asarray(X, dtype=np.float64)
    check_cells(*features.shape, max_cells, "n_samples")
    return ParsedDataset(features, np.asarray(labels, dtype=np.int64), CLASSIFICATION,
                         [str(c) for c in classes])
