"""Labels to training targets, the same rules for every upload format.

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

import numpy as np

from jobs.dataset_types import CLASSIFICATION, REGRESSION, Where, first_true, invalid

MAX_INFERRED_CLASSES = 20
# Defensive caps: a label column with a million distinct values is a mistake, not classes.
MAX_CLASSES = 10_000
MAX_LABEL_CHARS = 200

Target = tuple[np.ndarray, str, list[str] | None]


def classes_target(index: np.ndarray, classes: list[str], where: Where) -> Target:
    if len(classes) < 2:
        raise invalid(where(), f"classification needs at least 2 classes; found only "
                               f"{classes[0]!r} (pass task 'regression' for a numeric target)")
    if len(classes) > MAX_CLASSES:
        raise invalid(where(), f"has {len(classes)} classes; at most {MAX_CLASSES} are allowed")
    return index.astype(np.int64), CLASSIFICATION, classes


def numeric_target(values: np.ndarray, task: str | None, where: Where) -> Target:
    """One number per sample (float64, shape (n,))."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise invalid(where(*first_true(bad)), "not a finite number")
    integral = np.floor(values) == values
    uniq, index = np.unique(values, return_inverse=True)
    if task is None:
        inferred = integral.all() and uniq.size <= MAX_INFERRED_CLASSES
        task = CLASSIFICATION if inferred else REGRESSION
    if task == REGRESSION:
        return values.reshape(-1, 1), REGRESSION, None
    if not integral.all():
        (i,) = first_true(~integral)
        raise invalid(where(i), f"classification labels must be integers or strings; "
                                f"got {float(values[i])!r}")
    return classes_target(index, [str(int(v)) for v in uniq], where)


def matrix_target(values: np.ndarray, task: str | None, where: Where) -> Target:
    """Rows of numbers per sample (float64, shape (n, k)): regression unless k == 1."""
    if task == CLASSIFICATION:
        if values.shape[1] != 1:
            raise invalid(where(), f"classification needs one label per row; "
                                   f"got {values.shape[1]} columns")
        return numeric_target(values[:, 0], task, where)
    bad = ~np.isfinite(values)
    if bad.any():
        raise invalid(where(*first_true(bad)), "not a finite number")
    return values, REGRESSION, None


def string_target(labels: list[str], task: str | None, where: Where) -> Target:
    if task == REGRESSION:
        raise invalid(where(), "regression targets must be numbers; got string labels "
                               "(use task 'classification')")
    for i, label in enumerate(labels):
        if not label.strip():
            raise invalid(where(i), "missing label (empty string)")
        if len(label) > MAX_LABEL_CHARS:
            raise invalid(where(i), f"label is longer than {MAX_LABEL_CHARS} characters")
    classes = sorted(set(labels))
    position = {c: k for k, c in enumerate(classes)}
    index = np.fromiter((position[s] for s in labels), dtype=np.int64, count=len(labels))
    return classes_target(index, classes, where)


def bool_target(flags: np.ndarray, task: str | None, where: Where) -> Target:
    if task == REGRESSION:
        raise invalid(where(), "regression targets must be numbers; got booleans "
                               "(use task 'classification')")
    if np.unique(flags).size < 2:
        only = "true" if bool(flags[0]) else "false"
        return classes_target(flags.astype(np.int64), [only], where)  # raises: one class
    return classes_target(flags.astype(np.int64), ["false", "true"], where)


def y_where(i: int | None = None, j: int | None = None) -> str:
    """Field names for a target sent as the array `y` (JSON and .npz)."""
    if i is None:
        return "y"
    return f"y[{i}]" if j is None else f"y[{i}][{j}]"
