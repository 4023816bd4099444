"""Bearer-token authentication for every /v1 route; the user lands in `g.user`."""
from __future__ import annotations

from flask import current_app, g, request

from jobs.auth import authenticate
from jobs.errors import Unauthorized
from service.session import db


def require_user() -> None:
    """before_request hook: refuse /v1 requests without a valid bearer token."""
    if not request.path.startswith("/v1/"):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    g.user = authenticate(db(), token.strip(), current_app.config["GRADTRACE"].token_pepper)


def current_user_id() -> str:
    return g.user.id
