"""Thin, named tasks: the task name and its arguments are a wire protocol."""
from __future__ import annotations

from celery import shared_task

from jobs import sweeps, training
from jobs.db import session_scope
from jobs.queue_config import RUN_JOB_TASK


@shared_task(name=RUN_JOB_TASK, bind=True)
def run_job(self, job_id: str) -> str:
    """Train job `job_id`; a repeat delivery of a claimed job does nothing."""
    runtime = self.app.gradtrace
    outcome = training.run_job(runtime.factory, runtime.settings, job_id,
                               worker_id=self.request.hostname or "worker",
                               shutdown=runtime.shutdown, on_start=runtime.on_job_start)
    if outcome == training.HANDED_BACK:
        # The job is queued again after a SIGTERM; this message is acked on return, so
        # ring the bell for the next worker now (the reaper would, later).
        self.app.send_task(RUN_JOB_TASK, args=[job_id])
    # A sweep trial that ended frees a slot: queue the sweep's next trials (issue 7).
    with session_scope(runtime.factory) as session:
        promoted = sweeps.promote_waiting(session, job_id)
    for trial_id in promoted:
        self.app.send_task(RUN_JOB_TASK, args=[trial_id])
    return outcome
