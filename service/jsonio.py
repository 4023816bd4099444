"""Strict JSON: refuse NaN, Infinity and overflowing numbers in; never emit them out."""
from __future__ import annotations

import json
import math

from flask.json.provider import DefaultJSONProvider

class NonFiniteNumber(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise NonFiniteNumber(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"number {text[:40]} is out of range")
    return value


def strict_loads(text: str | bytes):
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        # The stdlib parser recurses once per nesting level.
        raise ValueError("JSON is nested too deeply") from None


class StrictJSONProvider(DefaultJSONProvider):
    sort_keys = False

    def loads(self, s, **kwargs):
        return strict_loads(s)

    def dumps(self, obj, **kwargs):
        kwargs.setdefault("allow_nan", False)
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", True)
        return json.dumps(obj, **kwargs)
