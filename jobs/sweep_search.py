"""Expanding a sweep's search into trial specs: field paths, grids, random draws.

Pure functions over plain dicts (no database). A parameter path names a field of the
engine spec: `optimizer.learning_rate`, `network.layers[0].units`, and for every layer
`network.layers[*].activation` or every layer but the output one `network.layers[:-1]...`.
A parameter's values are a list (grid: every value; random: drawn uniformly) or a
distribution `{"distribution": "uniform"|"log_uniform"|"int_uniform", "min", "max"}` or
`{"distribution": "choice", "values": [...]}` (random search only, except `choice`).
"""
from __future__ import annotations

import copy
import itertools
import math
import random
import re
from dataclasses import dataclass
from typing import Any

from jobs.errors import InvalidInput

SPEC_SECTIONS = ("network", "loss", "optimizer", "training", "record", "diagnostics")
DISTRIBUTIONS = ("choice", "uniform", "log_uniform", "int_uniform")
MAX_CHOICES = 1000
_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[(?:-?\d+|\*|:-1)\])*)$")
_INDEX = re.compile(r"\[(-?\d+|\*|:-1)\]")

Step = str | int  # a dict key, a list index, or "*" / ":-1" for several list items


@dataclass(frozen=True)
class Parameter:
    """One searched field: its path, parsed steps, and its values or distribution."""

    path: str
    steps: tuple[Step, ...]
    values: tuple[Any, ...] | None
    distribution: dict | None

    def draw(self, rng: random.Random) -> Any:
        if self.values is not None:
            return self.values[rng.randrange(len(self.values))]
        low, high = self.distribution["min"], self.distribution["max"]
        kind = self.distribution["distribution"]
        if kind == "log_uniform":
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        if kind == "int_uniform":
            return rng.randint(int(low), int(high))
        return rng.uniform(low, high)


def parse_parameters(raw: dict[str, Any], method: str) -> list[Parameter]:
    """Check every path and value set; errors name `search.parameters.<path>`."""
    if not raw:
        raise InvalidInput("the search has no parameters",
                           [("search.parameters", "give at least one parameter")])
    return [_parameter(path, spec, method) for path, spec in raw.items()]


def _parameter(path: str, spec: Any, method: str) -> Parameter:
    field = f"search.parameters.{path}"
    steps = parse_path(path, field)
    if isinstance(spec, list):
        return Parameter(path, steps, _choices(spec, field), None)
    if not isinstance(spec, dict) or spec.get("distribution") not in DISTRIBUTIONS:
        raise InvalidInput(f"parameter {path}: expected a list of values or a distribution",
                           [(field, "a list, or an object with distribution one of "
                                    + ", ".join(DISTRIBUTIONS))])
    if spec["distribution"] == "choice":
        _only_keys(spec, ("distribution", "values"), field)
        return Parameter(path, steps, _choices(spec.get("values"), field + ".values"), None)
    if method == "grid":
        raise InvalidInput(f"parameter {path}: a grid needs a list of values",
                           [(field, f"{spec['distribution']} can only be sampled by a "
                                    + "random search; give a list of values for a grid")])
    _only_keys(spec, ("distribution", "min", "max"), field)
    low, high = spec.get("min"), spec.get("max")
    if not all(_is_number(v) for v in (low, high)) or not low <= high:
        raise InvalidInput(f"parameter {path}: needs numbers min <= max",
                           [(field, "min and max must be finite numbers with min <= max")])
    if spec["distribution"] == "log_uniform" and low <= 0:
        raise InvalidInput(f"parameter {path}: log_uniform needs min > 0",
                           [(field + ".min", "must be greater than 0 for log_uniform")])
    return Parameter(path, steps, None, {**spec, "min": float(low), "max": float(high)})


def _choices(values: Any, field: str) -> tuple[Any, ...]:
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_CHOICES:
        raise InvalidInput(f"{field}: expected a non-empty list of values",
                           [(field, f"expected a list of 1 to {MAX_CHOICES} values")])
    return tuple(values)


def _only_keys(spec: dict, allowed: tuple[str, ...], field: str) -> None:
    extra = sorted(set(spec) - set(allowed))
    if extra:
        raise InvalidInput(f"{field}: unknown keys {', '.join(extra)}",
                           [(f"{field}.{key}", "unknown field") for key in extra])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def parse_path(path: str, field: str) -> tuple[Step, ...]:
    """`network.layers[0].units` -> ("network", "layers", 0, "units")."""
    steps: list[Step] = []
    for segment in path.split("."):
        match = _SEGMENT.match(segment)
        if match is None:
            raise InvalidInput(f"malformed parameter path {path!r}",
                               [(field, "expected dotted names with optional list "
                                        + "indexes [n], [*] or [:-1]")])
        steps.append(match.group(1))
        for index in _INDEX.findall(match.group(2)):
            steps.append(index if index in ("*", ":-1") else int(index))
    if steps[0] not in SPEC_SECTIONS:
        raise InvalidInput(f"parameter {path} is not a spec field",
                           [(field, f"must start with one of {', '.join(SPEC_SECTIONS)}")])
    return tuple(steps)


def expand(parameters: list[Parameter], method: str, max_trials: int | None,
           seed: int) -> list[dict[str, Any]]:
    """The parameter values of each trial, in trial order."""
    if method == "grid":
        size = math.prod(len(p.values) for p in parameters)
        if max_trials is not None and size > max_trials:
            raise InvalidInput(
                f"the grid has {size} combinations, more than max_trials {max_trials}",
                [("max_trials", f"raise it to {size} or search fewer values")])
        return [dict(zip([p.path for p in parameters], combo))
                for combo in itertools.product(*(p.values for p in parameters))]
    if max_trials is None:
        raise InvalidInput("a random search needs max_trials",
                           [("max_trials", "required for method random")])
    rng = random.Random(seed)
    return [{p.path: p.draw(rng) for p in parameters} for _ in range(max_trials)]


def apply(base: dict, parameters: list[Parameter], values: dict[str, Any]) -> dict:
    """A deep copy of `base` with each parameter's value written at its path."""
    spec = copy.deepcopy(base)
    for parameter in parameters:
        _write(spec, parameter.steps, values[parameter.path],
               f"search.parameters.{parameter.path}")
    return spec


def _write(node: Any, steps: tuple[Step, ...], value: Any, field: str) -> None:
    step, rest = steps[0], steps[1:]
    if isinstance(step, str) and step not in ("*", ":-1"):
        if not isinstance(node, dict):
            raise InvalidInput(f"{field}: {step!r} is not inside an object in the base spec",
                               [(field, "the base spec has no object at this path")])
        if not rest:
            node[step] = copy.deepcopy(value)
            return
        if node.get(step) is None:
            node[step] = {}  # e.g. an optimizer section the base leaves to its defaults
        _write(node[step], rest, value, field)
        return
    for index in _list_indexes(node, step, field):
        if rest:
            _write(node[index], rest, value, field)
        else:
            node[index] = copy.deepcopy(value)


def _list_indexes(node: Any, step: Step, field: str) -> range | list[int]:
    if not isinstance(node, list) or not node:
        raise InvalidInput(f"{field}: the base spec has no list here",
                           [(field, "the base spec has no non-empty list at this path")])
    if step == "*":
        return range(len(node))
    if step == ":-1":
        return range(len(node) - 1)
    if not -len(node) <= step < len(node):
        raise InvalidInput(f"{field}: index {step} is out of range",
                           [(field, f"the base spec's list has {len(node)} items")])
    return [step]


def read(spec: dict, steps: tuple[Step, ...]) -> Any:
    """The value at a parameter's path (the first item for [*] and [:-1]); None if absent."""
    node: Any = spec
    for step in steps:
        if isinstance(node, dict) and isinstance(step, str) and step not in ("*", ":-1"):
            node = node.get(step)
        elif isinstance(node, list) and node:
            index = 0 if step in ("*", ":-1") else step
            node = node[index] if -len(node) <= index < len(node) else None
        else:
            return None
    return node
