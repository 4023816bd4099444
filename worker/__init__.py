"""The Celery worker: the Celery app and thin tasks that hand a job id to `jobs`.

May import `jobs`, `mlp` and Celery. Never imports Flask or `service`.
"""
