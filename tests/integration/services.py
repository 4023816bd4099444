"""Real PostgreSQL, Redis, worker processes and an HTTP server for integration tests.

Under CI=true an unreachable PostgreSQL or Redis fails the test instead of skipping it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("GRADTRACE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def unavailable(what: str, exc: Exception):
    message = f"{what} is not reachable: {exc}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: integration tests must not skip)")
    pytest.skip(message)


@contextmanager
def fresh_postgres_database():
    """Create an empty database on the local server, yield its URL, drop it after."""
    name = f"gt_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        unavailable("PostgreSQL", exc)
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def redis_url(db: int) -> str:
    """The machine's Redis. Test runs share it, so each stack uses a queue of its own
    (`unique_queue`) and never flushes anything."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(100).startswith(b"+PONG")
    except Exception as exc:  # noqa: BLE001
        unavailable("Redis", exc)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def unique_queue() -> str:
    return f"gradtrace-test-{uuid.uuid4().hex[:10]}"


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env,
                   check=True, capture_output=True)


def worker_env(settings) -> dict:
    """The environment a worker process (or the API) reads these `settings` from."""
    return {**os.environ, "DATABASE_URL": settings.database_url,
            "CELERY_BROKER_URL": settings.broker_url,
            "GRADTRACE_STATE_DIR": str(settings.state_dir),
            "GRADTRACE_STORAGE_DIR": str(settings.storage_dir),
            "GRADTRACE_TOKEN_PEPPER": settings.token_pepper,
            "GRADTRACE_QUEUE": settings.queue,
            "GRADTRACE_HEARTBEAT_S": str(settings.heartbeat_s),
            "GRADTRACE_LEASE_TTL_S": str(settings.lease_ttl_s),
            "GRADTRACE_CHECKPOINT_INTERVAL_S": str(settings.checkpoint_interval_s)}


class WorkerProcess:
    """A real `celery worker` subprocess; logs go to a file for post-mortems."""

    def __init__(self, env: dict, name: str, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "celery", "-A", "worker.entry", "worker",
               "--loglevel=INFO", "--concurrency=1", f"--hostname={name}@%h"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready: {self.log_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class HttpServer:
    """The Flask app served over real HTTP on a free loopback port, in a thread."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})

    def stop(self) -> None:
        self.server.shutdown()


def wait_until(condition, timeout: float = 60.0, every: float = 0.02):
    """Poll `condition` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"condition not met in {timeout} s")


def wait_for_status(client: httpx.Client, job_id: str, statuses: set[str],
                    timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
