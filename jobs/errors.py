"""Domain errors. They carry a machine-readable code and field details, never HTTP codes.

`service/errors.py` maps each class to a status; the worker maps them to job failures.
"""
from __future__ import annotations


class DomainError(Exception):
    """Base class: `code` is stable for clients; `details` name the offending fields."""

    code = "error"

    def __init__(self, message: str, details: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.message = message
        self.details = list(details or [])


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """The resource is in a state that forbids the action (e.g. cancel a finished job)."""

    code = "conflict"


class InvalidInput(DomainError):
    """Well-formed but unacceptable input: a bad spec, bad data, unknown fields."""

    code = "invalid"


class LimitExceeded(DomainError):
    """A configured resource limit was hit; `limit` names the setting, `value` its value.

    `kind` says how the service should answer: "size" (413), "quota" (429) or
    "invalid" (422).
    """

    code = "limit_exceeded"

    def __init__(self, limit: str, value: float, message: str, *, kind: str = "invalid",
                 field: str | None = None):
        details = [(field, message)] if field else []
        super().__init__(message, details)
        self.limit = limit
        self.value = value
        self.kind = kind


class Unauthorized(DomainError):
    code = "unauthorized"
