"""Bearer-token authentication for every /v1 route; the user lands in `g.user`.

The token is read from the `Authorization` header only: a token in the query string or
the body is never looked at, so it cannot leak into access logs as a working credential.
Imports Flask, `jobs` and `service` modules only.
"""
from __future__ import annotations

from flask import current_app, g, request

from jobs.auth import authenticate_cached, hash_token
from jobs.errors import Unauthorized
from service.ratelimit import charge_failed_auth
from service.session import db

def require_user():
    """before_request hook: refuse /v1 requests without a valid bearer token."""
    # A CORS preflight carries no credentials by design; it gets headers, never data.
    if not request.path.startswith("/v1/") or request.method == "OPTIONS":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    digest = hash_token(token.strip(), current_app.config["GRADTRACE"].token_pepper)
    try:
        # A recently valid token is not looked up again (bounds in jobs/auth.py).
        g.user = authenticate_cached(db, digest)
    except Unauthorized:
        refusal = charge_failed_auth()
        if refusal is not None:
            return refusal
        raise
    # Lets a route recognise the caller's own token (never the secret itself).
    g.token_digest = digest
    return None


def current_user_id() -> str:
    return g.user.id
