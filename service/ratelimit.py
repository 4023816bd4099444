"""Per-user request rate on /v1, and a per-address cap on failed logins.

Counted with the `limits` library's sliding-window counter: one Redis round trip per
request, O(1) whatever the rate; a process that sees many requests of one user counts
them a few at a time (service/rate_reservations.py), never letting more through. The
counters live in `rate_limit_storage_uri`: Redis whenever the broker is Redis, so every
API process shares them (an in-memory store would give each process its own budget);
memory:// only in the embedded single-process mode.
If the shared store fails, this process counts in memory until it answers again: a broken
counter store must neither lock everyone out nor lift the limit.

This is a thin before-request hook rather than Flask-Limiter, whose general machinery
(per-route limits, exemption scopes, header injection) cost about 1 ms per request, more
than the Redis call itself (bench/poll_cost.py). No X-RateLimit-* headers (a second
round trip per request); a refused request says when to retry (Retry-After).

Imports Flask, limits, `jobs` and `service` modules only.
"""
from __future__ import annotations

import logging
import math
import time

from flask import Flask, current_app, g, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from service.errors import error_response
from service.rate_reservations import Reservations

log = logging.getLogger(__name__)
EXTENSION = "gradtrace_limiter"
FAILED_AUTH_KEY = "failed-auth"


class RateLimits:
    """The two limits of the settings, counted in the shared store (or, while it fails,
    in this process's memory)."""

    def __init__(self, settings):
        # Parsed here so that a malformed setting fails at start-up, not on a request.
        self.per_user = parse(settings.rate_limit)
        self.failed_auth = parse(settings.auth_failure_rate_limit)
        # Several deployments (and test runs) may share one Redis: prefix by queue name.
        self.prefix = f"gradtrace:{settings.queue}"
        self._shared = SlidingWindowCounterRateLimiter(
            storage_from_string(settings.rate_limit_storage_uri))
        self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._failing = False  # logged when the store fails and when it answers again
        self._reserved = Reservations()

    def hit_user(self, key: str) -> tuple[bool, int]:
        """Count one request against the per-user limit, from this process's reservation
        while it holds one (service/rate_reservations.py)."""
        if self._reserved.take(key):
            return True, 0
        size = self._reserved.next_size(key, self.per_user.amount)
        allowed, retry = self.hit(self.per_user, key, cost=size)
        if not allowed and size > 1:  # fewer than `size` left in the window: count one
            size = 1
            allowed, retry = self.hit(self.per_user, key)
        if allowed:
            self._reserved.hold(key, size)
        return allowed, retry

    def hit(self, item: RateLimitItem, *key: str, cost: int = 1) -> tuple[bool, int]:
        """Count `cost` requests; return (allowed, seconds until the window lets one through)."""
        try:
            counted = self._count(self._shared, item, key, cost)
        except Exception as exc:  # noqa: BLE001 - any store failure: count locally instead
            if not self._failing:
                log.warning("rate-limit store failed (%s); counting in this process",
                            exc.__class__.__name__)
            self._failing = True
            return self._count(self._local, item, key, cost)
        if self._failing:
            log.warning("rate-limit store answers again")
            self._failing = False
        return counted

    def _count(self, limiter, item, key, cost: int) -> tuple[bool, int]:
        if limiter.hit(item, self.prefix, *key, cost=cost):
            return True, 0
        reset = limiter.get_window_stats(item, self.prefix, *key).reset_time
        return False, max(1, math.ceil(reset - time.time()))


def init_rate_limit(app: Flask) -> RateLimits:
    """Register the limiter; call after the authentication hook so `g.user` is known."""
    limits = RateLimits(app.config["GRADTRACE"])
    app.extensions[EXTENSION] = limits
    app.before_request(_charge_request)
    return limits


def rate_key() -> str:
    """The authenticated user; the client address for requests without one."""
    user = g.get("user")
    return f"user:{user.id}" if user is not None else f"addr:{request.remote_addr}"


def _charge_request():
    # Health checks, the OpenAPI document and the dashboard's static files are not metered.
    if not request.path.startswith("/v1/") or request.method == "OPTIONS":
        return None
    limits: RateLimits = current_app.extensions[EXTENSION]
    allowed, retry = limits.hit_user(rate_key())
    if allowed:
        return None
    setting = current_app.config["GRADTRACE"].rate_limit
    message = f"too many requests; the limit rate_limit is {setting}"
    return error_response(429, "rate_limited", message, [("rate_limit", message)],
                          {"Retry-After": str(retry)})


def charge_failed_auth():
    """Count a refused token against the client's address; a 429 response once over
    `auth_failure_rate_limit`, otherwise None (the caller answers 401).

    Guessing tokens is hopeless (256 random bits), but the refusals still cost a
    database look-up each, so they are capped too.
    """
    limits: RateLimits = current_app.extensions[EXTENSION]
    allowed, retry = limits.hit(limits.failed_auth, FAILED_AUTH_KEY,
                                request.remote_addr or "unknown")
    if allowed:
        return None
    setting = current_app.config["GRADTRACE"].auth_failure_rate_limit
    message = (f"too many failed authentications from this address; the limit "
               f"auth_failure_rate_limit is {setting}")
    return error_response(429, "rate_limited", message,
                          [("auth_failure_rate_limit", message)], {"Retry-After": str(retry)})
