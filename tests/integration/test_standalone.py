"""`make run`'s own command, gradtrace-standalone: no Redis, no PostgreSQL, one process tree."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.factories import xor_job
from tests.integration.services import ROOT, wait_for_status

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_run_serves_and_trains_on_embedded_defaults(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")}
    env.update(PORT=str(port), GRADTRACE_STATE_DIR=str(tmp_path / "state"))
    log = open(tmp_path / "standalone.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "gradtrace-standalone")],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        token = _wait_for_token(tmp_path / "state" / "token", proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            _wait_ready(client, proc)
            dataset = client.post("/v1/datasets", json={"name": "xor", "builtin": "xor"}).json()
            job = client.post("/v1/jobs", json=xor_job(dataset["id"], epochs=300)).json()
            done = wait_for_status(client, job["id"], {"succeeded", "failed"}, timeout=120)
            assert done["status"] == "succeeded", done["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    output = (tmp_path / "standalone.log").read_text()
    assert f"http://127.0.0.1:{port}" in output and token in output
    assert proc.returncode is not None


def _wait_for_token(path: Path, proc, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        assert proc.poll() is None, "gradtrace-standalone exited early"
        time.sleep(0.2)
    raise TimeoutError("no token written")


def _wait_ready(client: httpx.Client, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gradtrace-standalone exited early"
        try:
            if client.get("/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError("API never became ready")
