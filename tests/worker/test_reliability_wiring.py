"""The worker's reliability wiring: hand-back re-send, fault hook, reaper start/stop, broker options."""
from __future__ import annotations

import pytest
from celery import signals

from jobs import training
from jobs.queue_config import RUN_JOB_TASK, celery_config
from worker import faults
from worker.celery_app import create_celery


def test_a_handed_back_job_is_sent_again(settings, session_factory, monkeypatch):
    app = create_celery(settings)
    sent = []
    monkeypatch.setattr("jobs.training.run_job", lambda *a, **kw: training.HANDED_BACK)
    monkeypatch.setattr(app, "send_task", lambda name, args: sent.append((name, args)))
    assert app.tasks[RUN_JOB_TASK](job_id="j-9") == training.HANDED_BACK
    assert sent == [(RUN_JOB_TASK, ["j-9"])]


def test_other_outcomes_are_not_resent(settings, session_factory, monkeypatch):
    app = create_celery(settings)
    monkeypatch.setattr("jobs.training.run_job", lambda *a, **kw: "succeeded")
    monkeypatch.setattr(app, "send_task", lambda *a, **kw: pytest.fail("re-sent"))
    assert app.tasks[RUN_JOB_TASK](job_id="j-9") == "succeeded"


def test_the_poison_hook_exits_only_on_matching_names(settings, monkeypatch):
    exits = []
    monkeypatch.setattr(faults.os, "_exit", exits.append)
    assert faults.job_start_hook(settings) is None
    hook = faults.job_start_hook(settings.model_copy(
        update={"fault_injection": "kill_worker_on_job:poison"}))
    hook("healthy")
    hook("poison-7")
    assert exits == [faults.EXIT_CODE]
    with pytest.raises(ValueError):
        faults.job_start_hook(settings.model_copy(update={"fault_injection": "kill_worker_on_job:"}))


def test_worker_ready_starts_the_reaper_and_shutdown_stops_it(settings):
    app = create_celery(settings.model_copy(update={"reaper_interval_s": 3600}))
    signals.worker_ready.send(sender=None)
    reaper = app.gradtrace.reaper
    try:
        assert reaper is not None and reaper.is_alive()
        signals.worker_shutting_down.send(sender=None, sig="SIGTERM", how="Warm", exitcode=0)
        reaper.join(2)
        assert not reaper.is_alive() and app.gradtrace.shutdown.is_set()
    finally:
        reaper.stop()


def test_visibility_timeout_reaches_every_place_kombu_reads_it(settings):
    conf = celery_config(settings.model_copy(update={"broker_url": "redis://h",
                                                     "visibility_timeout_s": 30}))
    assert conf["broker_transport_options"]["visibility_timeout"] == 30
    assert conf["result_backend_transport_options"]["visibility_timeout"] == 30
    assert conf["broker_transport_options"]["unacked_restore_interval"] == 3
    # A SIGKILLed worker's scan lock stalls every scan for 9 s, not kombu's 300 s.
    assert conf["broker_transport_options"]["unacked_mutex_expire"] == 9
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
