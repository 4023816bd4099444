"""Thin, named tasks: the task name and its arguments are a wire protocol."""
from __future__ import annotations

from celery import shared_task

from jobs import training
from jobs.queue_config import RUN_JOB_TASK


@shared_task(name=RUN_JOB_TASK, bind=True)
def run_job(self, job_id: str) -> str:
    """Train job `job_id`; a repeat delivery of a claimed job does nothing."""
    runtime = self.app.gradtrace
    return training.run_job(runtime.factory, runtime.settings, job_id,
                            worker_id=self.request.hostname or "worker",
                            shutdown=runtime.shutdown)
