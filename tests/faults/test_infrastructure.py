"""Scenarios 3 and 4: Redis restarted under load; PostgreSQL connections killed in training."""
from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError

from jobs.db import session_scope
from jobs.models import Job
from tests.faults.conftest import create_dataset, submit
from tests.integration.services import PG_ADMIN_URL, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private, persistent (AOF) redis-server this test may stop and start at will."""

    def __init__(self, folder):
        self.port, self.folder, self.proc = _free_port(), folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                 "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            from tests.integration.services import unavailable
            unavailable("redis-server", exc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def statuses(stack, job_ids) -> dict[str, str]:
    with session_scope(stack.factory) as session:
        return dict(session.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids))).all())


def test_redis_restart_with_jobs_queued_and_running_loses_none(make_stack, tmp_path):
    """Scenario 3."""
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        stack = make_stack(broker_url=redis.url)
        stack.start_worker()
        stack.start_worker()
        with stack.client() as client:
            dataset_id = create_dataset(client)
            accepted = [submit(client, dataset_id) for _ in range(6)]
        wait_until(lambda: list(statuses(stack, accepted).values()).count("running") == 2)
        waiting = [j for j, s in statuses(stack, accepted).items() if s == "queued"]
        redis.stop()
        time.sleep(2.0)
        redis.start()
        back = time.monotonic()
        wait_until(lambda: any(statuses(stack, waiting)[j] != "queued" for j in waiting), 120)
        recovery = time.monotonic() - back
        stack.wait(accepted, timeout=180)
        figures = stack.reconcile("3. Redis restarted (2 s down, AOF) with 2 running, "
                                  f"{len(waiting)} queued", accepted, recoveries=[recovery],
                                  note="recovery = Redis back to the next queued job starting")
    finally:
        redis.stop()
    assert figures.completed == figures.identical == len(accepted)
    assert figures.duplicates == 0


def test_killed_database_connections_lose_no_epoch(make_stack):
    """Scenario 4: pg_terminate_backend on every connection to the job database, 3x a second.

    Checkpoints go to the shared folder here, so file writes meet the dropped connections.
    """
    stack = make_stack(checkpoint_storage="folder")
    stack.start_worker()
    db_name = stack.settings.database_url.rsplit("/", 1)[1]
    with stack.client() as client:
        dataset_id = create_dataset(client)
        accepted = [submit(client, dataset_id) for _ in range(3)]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    killed, stop = [0], threading.Event()

    def killer():
        with admin.connect() as conn:
            while not stop.wait(0.3):
                killed[0] += conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": db_name}
                ).scalar_one()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        wait_until(lambda: _all_finished(stack, accepted), 240)
    finally:
        stop.set()
        thread.join(5)
        admin.dispose()
    attempts = [stack.job(j).attempts for j in accepted]
    leftovers = list((stack.settings.storage_dir / "checkpoints").iterdir())
    figures = stack.reconcile("4. PostgreSQL connections killed every 0.3 s in training",
                              accepted, note=f"{killed[0]} connections killed; attempts {attempts}")
    assert killed[0] > 10
    assert leftovers == []  # every checkpoint file was replaced or removed
    assert figures.completed == figures.identical == len(accepted)
    assert figures.duplicates == 0


def _all_finished(stack, job_ids) -> bool:
    try:
        return all(s in ("succeeded", "failed") for s in statuses(stack, job_ids).values())
    except OperationalError:  # our own connection was just killed too
        return False
