"""Liveness and readiness, without authentication."""
from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy import text

from service.queue import broker_reachable
from service.session import db

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])


@bp.get("/health", summary="Liveness: the process answers")
def health():
    return {"status": "ok"}


@bp.get("/ready", summary="Readiness: database and broker reachable (503 if not)")
def ready():
    checks = {"database": _database_ok(), "broker": broker_reachable()}
    status = 200 if all(checks.values()) else 503
    return {"status": "ready" if status == 200 else "unavailable", "checks": checks}, status


def _database_ok() -> bool:
    try:
        db().execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False
