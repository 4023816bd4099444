"""The HTTP API: the only package that imports Flask.

May import `jobs`, `mlp`, Flask, flask-openapi3, `limits` (rate-limit counters),
pydantic and Celery's client side (to send a job id by task name). Never imports `worker`.
"""
from service.app import create_app

__all__ = ["create_app"]
