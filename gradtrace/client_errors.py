"""Exceptions of the Python client; API refusals carry the error envelope's fields."""
from __future__ import annotations


class ClientError(Exception):
    """Base class of everything the client raises on purpose."""


class ServerUnavailable(ClientError):
    """The server could not be reached (refused, timed out, connection dropped)."""


class ApiError(ClientError):
    """The API answered with an error: HTTP `status`, and its `code`, `message`, `details`
    (a list of {"field", "message"} dicts)."""

    def __init__(self, status: int, code: str, message: str, details: list[dict] | None = None):
        super().__init__(f"{message} ({status} {code})")
        self.status, self.code, self.message = status, code, message
        self.details = details or []


class AuthError(ApiError):
    """401/403: the token is missing, wrong, expired or revoked."""


class NotFoundError(ApiError):
    """404: no such resource (or it belongs to another user)."""


def error_for(status: int, body: object, fallback: str) -> ApiError:
    """The exception for an error response, read from the JSON envelope when there is one."""
    envelope = body.get("error") if isinstance(body, dict) else None
    if not isinstance(envelope, dict):
        envelope = {"code": f"http_{status}", "message": fallback or f"HTTP {status}"}
    cls = AuthError if status in (401, 403) else NotFoundError if status == 404 else ApiError
    return cls(status, str(envelope.get("code", f"http_{status}")),
               str(envelope.get("message", fallback)), list(envelope.get("details") or []))
