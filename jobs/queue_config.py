"""The Celery and broker settings shared by the API (which sends) and the worker.

Every setting that decides whether a job is lost or run twice is here, with its reason.
The job row is the source of truth; a message only says "job N is ready", so a lost
message is re-sent by the reaper and a duplicate one finds the job already claimed.
"""
from __future__ import annotations

from jobs.settings import Settings

RUN_JOB_TASK = "gradtrace.run_job"
# kombu's SQL transport polls once a second by default; 0.2 s keeps `make run` snappy.
EMBEDDED_POLLING_S = 0.2


def celery_config(settings: Settings) -> dict:
    """Plain data for `Celery.conf.update`; this module does not import Celery."""
    vt = settings.visibility_timeout_s
    restore_s = max(1, min(10, int(vt / 10)))
    transport: dict = {
        # Redis redelivers an unacknowledged message after this long, even while its
        # task still runs. Training jobs outlive any sane value, so the lease on the job
        # row (not this timeout) protects against double runs; the timeout only bounds
        # how long a message of a SIGKILLed worker waits before it comes back, and the
        # reaper re-sends such a job sooner (after the lease TTL) anyway.
        "visibility_timeout": vt,
        # How often a worker scans for such messages: every interval x throttle seconds
        # (kombu's default is 10 x 10 s). One ZRANGE per scan, so a tenth of the timeout.
        "unacked_restore_interval": restore_s,
        "unacked_restore_throttle": 1,
        # A scan holds a Redis lock for milliseconds, but a worker SIGKILLed while holding
        # it would stop every worker's scans until the lock expires: 300 s by default,
        # longer than the 1 s visibility timeout of the fault suite's scenario 2. Three
        # scan intervals bound that stall.
        "unacked_mutex_expire": 3 * restore_s,
    }
    if settings.embedded_broker:
        # kombu's SQL transport hands every transport option to create_engine, so its
        # polling interval cannot be set here; the worker sets it on the transport class
        # (EMBEDDED_POLLING_S).
        transport = {}
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        # Kombu reads the timeout from the result backend's options too (celery #7651).
        "result_backend_transport_options": transport,
        "visibility_timeout": settings.visibility_timeout_s,
        "broker_connection_retry_on_startup": True,
        # JSON only: pickle would let whoever reaches the broker run code on workers.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        # The job row is the result store.
        "task_ignore_result": True,
        # One queue per deployment (tests give each run its own on a shared Redis).
        "task_default_queue": settings.queue,
        # Acknowledge after the task returns, and requeue if the worker dies mid-task:
        # at-least-once delivery; the claim on the job row makes repeats harmless.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Reserve one message at a time, so a busy worker never sits on queued jobs.
        "worker_prefetch_multiplier": 1,
        # Threads, one per worker process: the main thread keeps consuming and handles
        # SIGTERM (so training can checkpoint and hand the job back), numpy releases the
        # GIL in BLAS. Scale out with more worker processes, not a bigger pool.
        "worker_pool": "threads",
        # Keep training through a broker blip; the lease prevents a parallel second run.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
    }
