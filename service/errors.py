"""One error envelope for every failure:
{"error": {"code": ..., "message": ..., "details": [{"field": ..., "message": ...}]}}.
"""
from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from jobs.errors import (Conflict, DomainError, InvalidInput, LimitExceeded, NotFound,
                         Unauthorized)

log = logging.getLogger(__name__)

STATUS_BY_ERROR = {NotFound: 404, Conflict: 409, InvalidInput: 422, Unauthorized: 401}
STATUS_BY_LIMIT_KIND = {"size": 413, "quota": 429, "invalid": 422}


class ApiError(Exception):
    """An HTTP-level refusal raised by the service itself (bad header, media type...)."""

    def __init__(self, status: int, code: str, message: str,
                 details: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []


def error_response(status: int, code: str, message: str, details=None, headers=None):
    body = {"error": {"code": code, "message": message,
                      "details": [{"field": f, "message": m} for f, m in (details or [])]}}
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def validation_error_response(exc: ValidationError):
    """flask-openapi3's hook: pydantic errors become 422 with one detail per field."""
    details = [(_field_path(e["loc"]), _pydantic_message(e)) for e in exc.errors()]
    fields = ", ".join(f for f, _ in details[:5])
    return error_response(422, "invalid", f"request validation failed: {fields}", details)


def _field_path(loc) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _pydantic_message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    return err["msg"]


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError):
        if isinstance(exc, LimitExceeded):
            status = STATUS_BY_LIMIT_KIND[exc.kind]
            details = exc.details or [(exc.limit, exc.message)]
            message = exc.message
            if exc.limit not in message:
                # Every refusal names the setting and its value, whoever raised it.
                message += f" (limit {exc.limit} = {exc.value})"
            return error_response(status, exc.code, message, details)
        status = next((s for cls, s in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 422)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, exc.code, exc.message, exc.details, headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        settings = current_app.config["GRADTRACE"]
        message = (f"the request is too large: the limit max_request_bytes is "
                   f"{settings.max_request_bytes} bytes and max_form_parts is "
                   f"{settings.max_form_parts} form parts")
        return error_response(413, "request_entity_too_large", message, [("body", message)])

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        # Keep the protocol headers werkzeug attached (Allow on 405, Retry-After...).
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return error_response(exc.code or 500, code, exc.description or exc.name,
                              headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # Never leak a stack trace; the log has it.
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
