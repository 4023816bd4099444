"""Sending job ids to the workers by task name (the API never imports worker code)."""
from __future__ import annotations

from celery import Celery
from flask import Flask, current_app

from jobs.queue_config import RUN_JOB_TASK, celery_config
from jobs.settings import Settings


class FaultInjected(RuntimeError):
    """Raised by the reliability suite's fault setting, to play an API crash."""


def init_queue(app: Flask, settings: Settings) -> None:
    celery = Celery("gradtrace-api", set_as_current=False)
    celery.conf.update(celery_config(settings))
    app.extensions["gradtrace_celery"] = celery


def publish_job(job_id: str) -> None:
    """Ring the bell for a committed job. Call only after the commit."""
    if current_app.config["GRADTRACE"].fault_injection == "after_commit_before_publish":
        raise FaultInjected(f"fault injected: job {job_id} committed but not published")
    current_app.extensions["gradtrace_celery"].send_task(RUN_JOB_TASK, args=[job_id])


def broker_reachable() -> bool:
    celery = current_app.extensions["gradtrace_celery"]
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False
