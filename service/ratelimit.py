"""Per-user request rate on /v1 (Flask-Limiter), and a per-address cap on failed logins.

The counters live in `rate_limit_storage_uri`: Redis whenever the broker is Redis, so
every API process shares them (an in-memory store would give each process its own
budget); memory:// only in the embedded single-process mode. Imports Flask, flask_limiter,
`jobs` and `service` modules only.
"""
from __future__ import annotations

import math
import time

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import parse

from service.errors import error_response

EXTENSION = "gradtrace_limiter"
FAILED_AUTH_KEY = "failed-auth"


def init_rate_limit(app: Flask) -> Limiter:
    """Register the limiter; call after the authentication hook so `g.user` is known."""
    settings = app.config["GRADTRACE"]
    for setting in ("rate_limit", "auth_failure_rate_limit"):
        parse(getattr(settings, setting))  # fail at start-up, not on the first request
    limiter = Limiter(
        # One budget per user across all routes (application limits), not one per route.
        key_func=rate_key, app=app, application_limits=[settings.rate_limit],
        application_limits_exempt_when=_exempt, storage_uri=settings.rate_limit_storage_uri,
        # The sliding-window counter costs O(1) in Redis per request. The moving window kept
        # one list entry per request and read the whole list back for the X-RateLimit
        # headers: O(requests in the window) per request, which dominated the API's cost
        # under polling load (bench/api_load.py). No X-RateLimit-* headers either: they
        # cost a second Redis round trip per request (about a third of a cached poll's
        # time); a refused request still says when to retry (Retry-After).
        key_prefix=_prefix(settings), strategy="sliding-window-counter",
        headers_enabled=False, swallow_errors=True, in_memory_fallback_enabled=True)
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    return limiter


def _prefix(settings) -> str:
    # Several deployments (and test runs) may share one Redis: prefix by queue name.
    return f"gradtrace:{settings.queue}"


def rate_key() -> str:
    """The authenticated user; the client address for requests without one."""
    user = g.get("user")
    return f"user:{user.id}" if user is not None else f"addr:{request.remote_addr}"


def _exempt() -> bool:
    # Health checks, the OpenAPI document and the dashboard's static files are not metered.
    return not request.path.startswith("/v1/") or request.method == "OPTIONS"


def _rate_limited(exc: RateLimitExceeded):
    settings = current_app.config["GRADTRACE"]
    limiter: Limiter = current_app.extensions[EXTENSION]
    current = limiter.current_limit
    retry = max(1, math.ceil(current.reset_at - time.time())) if current else 1
    message = f"too many requests; the limit rate_limit is {settings.rate_limit}"
    return error_response(429, "rate_limited", message, [("rate_limit", message)],
                          {"Retry-After": str(retry)})


def charge_failed_auth():
    """Count a refused token against the client's address; a 429 response once over
    `auth_failure_rate_limit`, otherwise None (the caller answers 401).

    Guessing tokens is hopeless (256 random bits), but the refusals still cost a
    database look-up each, so they are capped too.
    """
    settings = current_app.config["GRADTRACE"]
    limiter: Limiter = current_app.extensions[EXTENSION]
    item = parse(settings.auth_failure_rate_limit)
    key = (_prefix(settings), FAILED_AUTH_KEY, request.remote_addr or "unknown")
    try:
        allowed = limiter.limiter.hit(item, *key)
        reset_at = limiter.limiter.get_window_stats(item, *key).reset_time
    except Exception:  # noqa: BLE001 - a broken counter store must not lock everyone out
        return None
    if allowed:
        return None
    message = (f"too many failed authentications from this address; the limit "
               f"auth_failure_rate_limit is {settings.auth_failure_rate_limit}")
    retry = max(1, math.ceil(reset_at - time.time()))
    return error_response(429, "rate_limited", message,
                          [("auth_failure_rate_limit", message)], {"Retry-After": str(retry)})
