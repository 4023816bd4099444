"""Test-only fault injection for the reliability suite (docs/reliability.md).

`GRADTRACE_FAULT_INJECTION=kill_worker_on_job:<prefix>` makes the worker process exit
abruptly (os._exit, no cleanup, like an OOM kill) right after it claims and loads a job
whose name starts with <prefix>: a poison job. Never set it in production.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable

from jobs.settings import Settings

log = logging.getLogger(__name__)
KILL_ON_JOB = "kill_worker_on_job:"
EXIT_CODE = 70


def job_start_hook(settings: Settings) -> Callable[[str], None] | None:
    """The hook `jobs.training.run_job` calls with the job's name, or None."""
    if not settings.fault_injection.startswith(KILL_ON_JOB):
        return None
    prefix = settings.fault_injection[len(KILL_ON_JOB):]
    if not prefix:
        raise ValueError(f"{KILL_ON_JOB} needs a job-name prefix")

    def kill_on_poison(name: str) -> None:
        if name.startswith(prefix):
            log.error("fault injection: killing this worker on job %r", name)
            os._exit(EXIT_CODE)

    return kill_on_poison
