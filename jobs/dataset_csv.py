"""CSV uploads: a header row, one label column named by `target`, numeric features.

The file is read in blocks of lines. A block without quotes goes through numpy's C
parser (`np.loadtxt`); any block it does not accept cleanly (a bad cell, a quote, a
ragged row, a value only Python's float() reads) is re-read by the `csv` module row by
row, which raises the precise error naming line and column. Once a quote has been seen
the rest of the file stays on the `csv` path, since a quoted field may span lines.
Features land in a `RowSink` (on disk for uploads), so memory stays bounded.
"""
from __future__ import annotations

import codecs
import csv
import itertools
import math
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from jobs.dataset_rows import RowSink
from jobs.dataset_targets import MAX_LABEL_CHARS, Target, numeric_target, string_target
from jobs.dataset_types import ParsedDataset, check_cells, check_task, invalid
from jobs.errors import InvalidInput, LimitExceeded

_CHUNK_BYTES = 64 * 1024
_AVG_FIELD_CHARS = 1024  # a line may average at most this many characters per field
_BLOCK_LINES = 4096


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
                raise invalid(f"csv line {self.line_no + 1}", "line is too long for its "
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
            raise invalid(f"csv line {self.line_no + 1}", "not valid UTF-8") from None


def _csv_cell_error(line: int, column: str, cell: str) -> InvalidInput:
    field = f"csv line {line}, column {column!r}"
    if not cell.strip():
        return invalid(field, "missing value")
    try:
        float(cell)
    except ValueError:
        return invalid(field, f"{cell[:40]!r} is not a number")
    return invalid(field, "not a finite number")


def _csv_target(labels: list[str], lines: array, column: str, task: str | None) -> Target:
    def where(i: int | None = None, j: int | None = None) -> str:
        return f"column {column!r}" if i is None else f"csv line {lines[i]}, column {column!r}"

    try:
        numbers = [float(s) for s in labels]
    except ValueError:  # not all numeric: the labels are names
        return string_target(labels, task, where)
    return numeric_target(np.array(numbers, dtype=np.float64), task, where)


def _csv_header(reader: Any, target: str, max_cells: int) -> tuple[list[str], int]:
    header = next(reader, None)
    if header is None:
        raise invalid("file", "the CSV file is empty; a header row is required")
    header = [h.strip() for h in header]
    if len(header) > max_cells:
        raise LimitExceeded("max_dataset_cells", max_cells, f"the CSV header has {len(header)} "
                            f"columns; the limit is {max_cells} cells", kind="size", field="file")
    if header.count(target) != 1:
        problem = "appears more than once" if target in header else "not found"
        listed = ", ".join(repr(h) for h in header[:50]) + (" ..." if len(header) > 50 else "")
        raise invalid("target", f"column {target!r} {problem}; the columns are: {listed}")
    if len(header) < 2:
        raise invalid("file", "the CSV has no feature columns besides the target")
    return header, header.index(target)


class _Body:
    """The data rows: features into the sink, labels and their line numbers alongside."""

    def __init__(self, names: list[str], t: int, max_cells: int, sink: RowSink):
        self.names, self.t, self.max_cells, self.sink = names, t, max_cells, sink
        self.ncols, self.d = len(names) + 1, len(names)
        self.features = [j for j in range(self.ncols) if j != t]
        self.labels: list[str] = []
        self.label_lines = array("q")

    def read(self, lines: _Lines) -> None:
        while True:
            first = lines.line_no + 1
            block = list(itertools.islice(lines, _BLOCK_LINES))
            if not block:
                return
            if not self._fast_block(block, first):
                return self._slow_rows(itertools.chain(block, lines), first - 1)

    def _fast_block(self, block: list[str], first: int) -> bool:
        """Parse a quote-free block with numpy; False (nothing kept) when it needs csv."""
        text = "".join(block)
        if '"' in text or "\r" in text.replace("\r\n", "\n"):
            return False
        rows = [line for line in block if line not in ("\n", "\r\n")]  # csv skips blank lines
        if not rows:
            return True
        if any(line.count(",") != self.ncols - 1 for line in rows):
            return False
        if (len(self.labels) + len(rows)) * self.d > self.max_cells:
            return False
        try:
            X = np.loadtxt(rows, delimiter=",", usecols=self.features, dtype=np.float64,
                           comments=None, ndmin=2, quotechar=None)
        except ValueError:
            return False
        if X.shape != (len(rows), self.d) or not np.isfinite(X).all():
            return False
        self.sink.append(X)
        self.labels.extend(self._labels(rows))
        self.label_lines.extend(i + first for i, line in enumerate(block)
                                if line not in ("\n", "\r\n"))
        return True

    def _labels(self, rows: list[str]) -> list[str]:
        t = self.t
        if t == self.ncols - 1:
            return [line.rpartition(",")[2].strip() for line in rows]
        if t == 0:
            return [line.partition(",")[0].strip() for line in rows]
        return [line.split(",")[t].strip() for line in rows]

    def _slow_rows(self, rest: Iterator[str], before: int) -> None:
        """Row by row with the csv module (`before`: the physical lines already read)."""
        reader = csv.reader(rest, strict=True)
        values = array("d")
        for row in reader:
            if not row:
                continue  # blank line
            line = before + reader.line_num
            if len(row) != self.ncols:
                raise invalid(f"csv line {line}",
                              f"has {len(row)} values; expected {self.ncols} (ragged rows)")
            check_cells(len(self.labels) + 1, self.d, self.max_cells, "file")
            cells = row[:self.t] + row[self.t + 1:]
            try:
                numbers = list(map(float, cells))
            except ValueError:
                numbers = [math.nan]
            if not all(map(math.isfinite, numbers)):
                j = next(j for j, c in enumerate(cells) if not _finite_str(c))
                raise _csv_cell_error(line, self.names[j], cells[j])
            values.extend(numbers)
            self.labels.append(row[self.t].strip())
            self.label_lines.append(line)
            if len(values) >= _BLOCK_LINES * self.d:
                self.sink.append(np.frombuffer(values, dtype=np.float64))
                values = array("d")
        if values:
            self.sink.append(np.frombuffer(values, dtype=np.float64))


def _finite_str(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _parse_csv_stream(stream: BinaryIO, target: str, task: str | None, max_cells: int,
                      scratch: Path | None) -> ParsedDataset:
    def header_too_wide(line: int) -> Exception:
        return LimitExceeded("max_dataset_cells", max_cells, f"the CSV header has more than "
                             f"{max_cells} columns", kind="size", field="file")

    # The header bound is loose (quoted commas); the exact check follows once it is parsed.
    lines = _Lines(stream, 2 * max_cells + 1024, header_too_wide)
    header, t = _csv_header(csv.reader(lines, strict=True), target, max_cells)
    ncols = len(header)
    names = header[:t] + header[t + 1:]  # the feature columns, in order
    lines.max_fields = ncols + MAX_LABEL_CHARS  # the target may hold quoted commas
    lines.too_many = lambda line: invalid(f"csv line {line}",
                                          f"has more than {ncols} values (ragged rows)")
    sink = RowSink(len(names), np.float64, scratch)
    try:
        body = _Body(names, t, max_cells, sink)
        body.read(lines)
    finally:
        sink.close()
    if not body.labels:
        raise invalid("file", "the CSV has a header but no data rows")
    y, task, classes = _csv_target(body.labels, body.label_lines, target, task)
    return ParsedDataset(sink.finish(), y, task, classes)


def parse_csv(stream: BinaryIO, target: str, task: str | None = None, *,
              max_cells: int, scratch: Path | None = None) -> ParsedDataset:
    """Parse a UTF-8 CSV with a header row; `target` names the label column, the others
    must be numeric. The stream is read line by line and left open. With `scratch` (a
    folder) the features are kept on disk there as a read-only memmap."""
    task = check_task(task)
    try:
        return _parse_csv_stream(stream, target, task, max_cells, scratch)
    except csv.Error as exc:
        raise invalid("file", f"malformed CSV: {exc}") from None
