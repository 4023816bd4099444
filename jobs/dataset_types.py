"""The validated dataset every parser returns, and the error helpers the parsers share.

A `ParsedDataset` is what training code may trust: X is a finite float32/float64 (n, d)
array (float32 only when an .npz sent float32), y is int64 class indices or a 2-D
float64 regression target. Big uploads keep X on disk (a read-only memmap in the
upload's scratch folder) so the API never holds it twice.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jobs.errors import InvalidInput, LimitExceeded

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

# Names a field for an error: where() is the whole target, where(i) an entry, where(i, j) a cell.
Where = Callable[..., str]


def invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", [(field, message)])


def too_many_cells(n: int, d: int, max_cells: int, field: str) -> LimitExceeded:
    return LimitExceeded("max_dataset_cells", max_cells,
                         f"dataset has {n} x {d} = {n * d} cells; the limit is {max_cells}",
                         kind="size", field=field)


def check_cells(n: int, d: int, max_cells: int | None, field: str) -> None:
    if max_cells is not None and n * d > max_cells:
        raise too_many_cells(n, d, max_cells, field)


def check_task(task: str | None) -> str | None:
    if task is not None and task not in TASKS:
        raise invalid("task", "must be 'classification' or 'regression'")
    return task


def first_true(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


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
