"""Typed field readers for spec validation; each appends ``(path, message)`` on error.

Readers return the canonical value, or None after recording an error, so validation
reports every problem in one pass rather than stopping at the first.
"""
import math


class Fields:
    """Collect validation errors while reading fields out of raw spec objects."""

    def __init__(self):
        self.errors = []

    def error(self, path, message):
        self.errors.append((path, message))

    def obj(self, value, path, allowed, required=()):
        """Return ``value`` if it is a dict with only ``allowed`` keys, else {} (after errors)."""
        if not isinstance(value, dict):
            self.error(path, f"expected an object, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.error(_join(path, key), f"unknown key {key!r}; expected one of {', '.join(allowed)}")
        for key in required:
            if key not in value:
                self.error(_join(path, key), "is required")
        return value

    def number(self, d, key, path, default, *, integer=False, minimum=None,
               exclusive_min=False, maximum=None, exclusive_max=False):
        """Read a finite number (an int when ``integer``) within the given bounds."""
        p = _join(path, key)
        value = d.get(key, default)
        if value is None and default is None and key in d:
            self.error(p, "must not be null")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                integer and not isinstance(value, int)):
            self.error(p, f"expected {'an integer' if integer else 'a number'}, got {_kind(value)}")
            return None
        if not math.isfinite(value):
            self.error(p, "must be a finite number")
            return None
        if minimum is not None and (value <= minimum if exclusive_min else value < minimum):
            self.error(p, f"must be {'>' if exclusive_min else '>='} {minimum}, got {value}")
            return None
        if maximum is not None and (value >= maximum if exclusive_max else value > maximum):
            self.error(p, f"must be {'<' if exclusive_max else '<='} {maximum}, got {value}")
            return None
        return int(value) if integer else float(value)

    def optional_number(self, d, key, path, **bounds):
        """Read a number that may be null (the default)."""
        if d.get(key) is None:
            return None
        return self.number(d, key, path, None, **bounds)

    def boolean(self, d, key, path, default):
        value = d.get(key, default)
        if not isinstance(value, bool):
            self.error(_join(path, key), f"expected true or false, got {_kind(value)}")
            return None
        return value

    def choice(self, d, key, path, default, names, what):
        value = d.get(key, default)
        if not isinstance(value, str) or value not in names:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            self.error(_join(path, key), f"unknown {what} {shown}; expected one of {', '.join(names)}")
            return None
        return value


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "an array", str: "a string", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)
