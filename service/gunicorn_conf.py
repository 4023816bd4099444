"""Gunicorn settings for the gradtrace API.

`gunicorn --config service/gunicorn_conf.py service.wsgi:app` (docker-compose.yml, api).

Loaded by gunicorn as a plain Python file, not imported as part of the `service` package; in the
image it sits alone in /app/service/ (no __init__.py there), so it must not import project code.
Everything here can still be overridden with GUNICORN_CMD_ARGS, e.g. "--workers=4".
"""
import os

# Listen on every interface inside the container; compose publishes ${GRADTRACE_PORT}:8000.
bind = f"0.0.0.0:{int(os.environ.get('PORT', '8000'))}"

# Threaded workers: a server-sent-event stream holds one thread for as long as the client
# listens, so the API keeps at least 32 threads for concurrent requests and streams in
# all, split over one process per core it may run on, 2 to 4 (2 x 16, 3 x 11, 4 x 8). A
# cached poll is short work for the interpreter, and a process's threads take turns on
# its one lock, so a process per core serves more than more processes: on a 2-core host,
# with a job training beside it, 2 x 16 served 844-935 requests/s to 50 clients against
# 636-659 for 4 x 8, with a lower p99 (bench/api_load.py, docs/service-performance.md).
# The cores are those of the CPU affinity mask: a container limited by a CPU quota
# (compose `cpus:`) rather than a cpuset sees the host's, so set --workers there.
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
worker_class = "gthread"
workers = min(4, max(2, _CPUS))
threads = -(-32 // workers)  # rounded up


def post_fork(server, worker):
    """Size each process's database pool to its threads (and two spare for a request that
    holds a second connection), unless GRADTRACE_API_DB_POOL_SIZE is set. Runs in the
    new process before it loads the app, with the final settings (GUNICORN_CMD_ARGS
    included); with --preload the app is built before this runs, with the default pool."""
    os.environ.setdefault("GRADTRACE_API_DB_POOL_SIZE", str(worker.cfg.threads + 2))


# `timeout` is the worker heartbeat; a gthread worker's main loop keeps beating while its
# threads hold open streams, so long SSE connections are not killed by it.
timeout = 60
# On SIGTERM, in-flight requests get this long before the workers are killed (compose gives the
# api container stop_grace_period: 30s, so this fits inside it).
graceful_timeout = 20
keepalive = 5

# Heartbeat files on tmpfs: a slow or full disk must not make the arbiter kill workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# gunicorn >= 25.1 opens a control socket under $HOME/.gunicorn/ by default. In the container
# HOME (/app) is read-only and nothing uses `gunicornc`, so do not open one.
control_socket_disable = True

# Logs to stdout/stderr for `docker compose logs`. The access log records no request
# headers, so an `Authorization: Bearer ...` token never reaches it (do not add
# %({authorization}i)s or similar), and no query string: gunicorn's default format logs
# the request line (%(r)s), so a token pasted into a URL would be written down. Path only.
accesslog = "-"
access_log_format = '%(h)s %(t)s %(m)s %(U)s %(H)s %(s)s %(b)s %(L)ss "%(a)s"'
errorlog = "-"
loglevel = "info"

# forwarded_allow_ips keeps gunicorn's default (127.0.0.1 / FORWARDED_ALLOW_IPS): only a proxy
# on the same host is trusted to set X-Forwarded-* headers.
