"""Entry point for `celery -A worker.entry worker`: the one place that reads the environment."""
import os

from jobs.settings import Settings

settings = Settings.from_env()
# BLAS reads its thread count once, when numpy loads: set it before anything imports numpy,
# so several workers on one machine do not oversubscribe its cores. An explicit variable wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(settings.blas_threads))

from worker.celery_app import create_celery  # noqa: E402  (after the thread settings)

settings.ensure_dirs()
app = create_celery(settings)
