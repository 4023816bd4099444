"""Entry point for `celery -A worker.entry worker`: the one place that reads the environment."""
from jobs.settings import Settings
from worker.celery_app import create_celery

settings = Settings.from_env()
settings.ensure_dirs()
app = create_celery(settings)
