"""Build the worker's Celery app from Settings (nothing happens at import time)."""
from __future__ import annotations

import os
import threading

from celery import Celery, signals

from jobs.db import make_engine, make_sessionmaker
from jobs.queue_config import EMBEDDED_POLLING_S, RUN_JOB_TASK, celery_config
from jobs.settings import Settings
from worker.faults import job_start_hook
from worker.reaper_loop import ReaperLoop


class WorkerRuntime:
    """Per-process resources: the settings, a database session factory, the shutdown flag."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.shutdown = threading.Event()
        self.on_job_start = job_start_hook(settings)
        self.reaper: ReaperLoop | None = None
        self._factory = None
        self._pid = None

    @property
    def factory(self):
        # Built lazily in the process that uses it, so no connection crosses a fork.
        if self._factory is None or self._pid != os.getpid():
            self._factory = make_sessionmaker(make_engine(self.settings.database_url))
            self._pid = os.getpid()
        return self._factory


def _faster_sql_polling() -> None:
    # The transport would pass a polling_interval option on to create_engine (and fail),
    # so the worker, the only consumer, sets the class default instead.
    from kombu.transport.sqlalchemy import Transport

    Transport.polling_interval = EMBEDDED_POLLING_S


def create_celery(settings: Settings) -> Celery:
    app = Celery("gradtrace", set_as_current=True)
    app.conf.update(celery_config(settings))
    if settings.embedded_broker:
        _faster_sql_polling()
    app.gradtrace = WorkerRuntime(settings)
    app.autodiscover_tasks(["worker"], related_name="tasks", force=True)

    def _on_ready(**_kwargs):
        runtime = app.gradtrace
        runtime.reaper = ReaperLoop(lambda: runtime.factory, settings,
                                    lambda job_id: app.send_task(RUN_JOB_TASK, args=[job_id]))
        runtime.reaper.start()

    def _on_shutdown(**_kwargs):
        # SIGTERM: ask the running job to checkpoint at its next batch and requeue.
        app.gradtrace.shutdown.set()
        if app.gradtrace.reaper is not None:
            app.gradtrace.reaper.stop()

    signals.worker_ready.connect(_on_ready, weak=False)
    signals.worker_shutting_down.connect(_on_shutdown, weak=False)
    return app
