"""The worker's Celery app: JSON only, late acks, the task registered by name."""
from jobs.queue_config import RUN_JOB_TASK
from worker.celery_app import create_celery


def test_celery_is_json_only_and_acks_late(settings):
    app = create_celery(settings)
    conf = app.conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert RUN_JOB_TASK in app.tasks


def test_task_hands_the_job_id_to_the_job_logic(settings, session_factory, monkeypatch):
    app = create_celery(settings)
    calls = []
    monkeypatch.setattr("jobs.training.run_job",
                        lambda factory, s, job_id, **kw: calls.append((job_id, kw)) or "ok")
    # Calling the task function directly runs its body in this process (no broker).
    assert app.tasks[RUN_JOB_TASK](job_id="j-1") == "ok"
    assert calls[0][0] == "j-1" and calls[0][1]["shutdown"] is app.gradtrace.shutdown
