"""Turn uploads (JSON, CSV, .npz) and built-in generators into one normalised `ParsedDataset`.

Everything a user sends is validated once, with errors naming the row/column at fault,
so training code can trust the arrays. The work is split by what it handles:
  dataset_types    ParsedDataset, its invariants, the shared error helpers
  dataset_targets  labels -> targets and the task-inference rules (documented there)
  dataset_json     JSON arrays and the built-in generators
  dataset_csv      CSV uploads, parsed in blocks
  dataset_npz      .npz uploads, read member by member
  dataset_rows     where parsed feature rows go (memory, or a scratch file on disk)
  dataset_codec    the canonical stored form (encode / write / memory-mapped open)
This module keeps the public names importable from one place.
"""
from __future__ import annotations

from jobs.dataset_codec import decode, encode, open_arrays, write_canonical
from jobs.dataset_csv import parse_csv
from jobs.dataset_json import BUILTINS, parse_builtin, parse_json
from jobs.dataset_npz import parse_npz
from jobs.dataset_targets import MAX_CLASSES, MAX_INFERRED_CLASSES, MAX_LABEL_CHARS
from jobs.dataset_types import CLASSIFICATION, REGRESSION, TASKS, ParsedDataset

__all__ = [
    "BUILTINS", "CLASSIFICATION", "MAX_CLASSES", "MAX_INFERRED_CLASSES", "MAX_LABEL_CHARS",
    "REGRESSION", "TASKS", "ParsedDataset", "decode", "encode", "open_arrays", "parse_builtin",
    "parse_csv", "parse_json", "parse_npz", "write_canonical",
]
