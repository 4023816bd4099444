# syntax=docker/dockerfile:1
# One image for the three gradtrace roles; docker-compose.yml picks the command:
#   migrate  alembic upgrade head
#   api      gunicorn --config service/gunicorn_conf.py service.wsgi:app
#   worker   celery -A worker.entry worker --loglevel=INFO --concurrency=1 --hostname=worker@%h
# Secrets (database password, token pepper, Redis password) come from the environment at run
# time (compose reads them from .env); nothing secret is copied into the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# builder: compilers live here only. Builds a wheel for every pinned runtime dependency
# (constraints.txt, generated from the dev venv) and one for gradtrace itself.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Debian package versions are fixed by the pinned base image tag; this stage is thrown away.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, so a source change does not rebuild them.
COPY constraints.txt ./
RUN pip wheel --wheel-dir /wheels --no-deps -r constraints.txt \
    && cp constraints.txt /wheels/constraints.txt

COPY pyproject.toml ./
COPY mlp ./mlp
COPY jobs ./jobs
COPY service ./service
COPY worker ./worker
COPY gradtrace ./gradtrace
RUN pip wheel --wheel-dir /wheels --no-deps .

# ---------------------------------------------------------------------------------------------
# runtime: no compilers, no pip cache, no source tree; installs only the wheels built above.
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADTRACE_STATE_DIR=/data/state \
    GRADTRACE_STORAGE_DIR=/data/storage \
    PORT=8000

# The wheels are bind-mounted from the builder, so they never become an image layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels -c /wheels/constraints.txt gradtrace \
    && groupadd --system --gid 10001 gradtrace \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin gradtrace \
    && mkdir -p /data/storage /data/state \
    && chown -R 10001:10001 /data

# Working directory of every role: alembic.ini and migrations/ for `alembic upgrade head`,
# service/gunicorn_conf.py for gunicorn. service/ here holds only that file (no __init__.py),
# so `service.wsgi` still imports from the installed package. Owned by root: read-only to
# the app user.
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
COPY service/gunicorn_conf.py ./service/gunicorn_conf.py

USER 10001:10001

# A new named volume mounted on /data/storage starts with this directory's owner (uid 10001).
EXPOSE 8000

CMD ["gunicorn", "--config", "service/gunicorn_conf.py", "service.wsgi:app"]
