"""Run docker-compose.yml's own commands without a Docker engine.

For migrate, api and two worker replicas this test takes the service's `command` and
`environment` from docker-compose.yml (interpolated from a test .env made from .env.example),
adds the image's `ENV` lines from the Dockerfile, and runs them as local processes:

* host names `postgres` / `redis` in the URLs are mapped to the machine's PostgreSQL and Redis
  (a fresh database `gradtrace_smoke_<random>`, dropped afterwards; Redis DB 9, flushed);
* the working directory is a copy of what the Dockerfile puts in WORKDIR (its COPY lines), and
  the project is importable the way the installed wheel is (a regular package on sys.path);
* named volumes become folders shared the same way (storage: api + both workers);
* each worker runs in its own UTS namespace with its own host name (`unshare --uts`), as each
  container has one, so `--hostname=worker@%h` gives two node names, exactly as in compose.

Then it waits for /ready, runs the api and worker healthcheck commands, creates a token with
`gradtrace-admin` in the api's environment (= `docker compose exec api gradtrace-admin ...`),
submits XOR jobs over HTTP and checks that all succeed and that both workers ran some.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from deploy_compose import (
    COMPOSE_FILE, ENV_EXAMPLE, ROOT, dockerfile_stages, environment_of, interpolate_tree,
    load_compose, materialize_copies, parse_env_file, stage_env)

pytestmark = pytest.mark.integration

# The local server (trust auth), as the other integration suites find it.
_PG_ADMIN = urlsplit(os.environ.get("GRADTRACE_TEST_PG",
                                    "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
PG_HOST = _PG_ADMIN.hostname or "127.0.0.1"
PG_PORT = _PG_ADMIN.port or 5432
PG_ADMIN_USER = _PG_ADMIN.username or "postgres"
PG_ADMIN_DB = _PG_ADMIN.path.lstrip("/") or "postgres"
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_DB = 9                        # not used by the other test suites; flushed before and after

N_JOBS = 6
WORKER_HOSTS = ("smoke-worker-1", "smoke-worker-2")

READY_TIMEOUT_S = 90
JOBS_TIMEOUT_S = 240
STOP_TIMEOUT_S = 30

JOB_BODY = {
    "name": "xor",
    "network": {"layers": [{"units": 4, "activation": "tanh"},
                           {"units": 1, "activation": "sigmoid"}]},
    "loss": "binary_cross_entropy",
    "optimizer": {"name": "sgd", "learning_rate": 0.5},
    "training": {"epochs": 500, "batch_size": 4, "seed": 0},
}


# --- environment checks ------------------------------------------------------------------------

def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2):
        return True
    return False


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: integration tests must not skip)")
    pytest.skip(message)


def _require_environment() -> None:
    missing = [p for p in ("service/wsgi.py", "worker/entry.py", "gradtrace/admin.py")
               if not (ROOT / p).exists()]
    if missing:
        _unavailable(f"service code not written yet: {', '.join(missing)} missing")
    if not _reachable(PG_HOST, PG_PORT):
        _unavailable(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}")
    if not _reachable(REDIS_HOST, REDIS_PORT):
        _unavailable(f"Redis is not reachable on {REDIS_HOST}:{REDIS_PORT}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        res = subprocess.run(["unshare", "--uts", "sh", "-c", "hostname smoke-probe"],
                             capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


# --- the "image": Dockerfile ENV and WORKDIR contents ------------------------------------------

def _runtime_stage() -> list[str]:
    return dockerfile_stages()[-1]


def _image_env() -> dict[str, str]:
    return stage_env(_runtime_stage())


def _build_workdir(dest: Path) -> None:
    """What the runtime stage COPYs into its WORKDIR, from the build context."""
    materialize_copies(_runtime_stage(), dest)


# --- compose service -> local process ----------------------------------------------------------

class Harness:
    def __init__(self, tmp: Path, db_name: str, port: int, use_unshare: bool):
        self.tmp = tmp
        self.db_name = db_name
        self.port = port
        self.use_unshare = use_unshare
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        dotenv = tmp / ".env"
        # A test .env: the documented example with the secrets filled in.
        example = parse_env_file(ENV_EXAMPLE)
        example.update(POSTGRES_PASSWORD="smoke-db-password", REDIS_PASSWORD="smoke-redis-password",
                       GRADTRACE_TOKEN_PEPPER=secrets.token_hex(16),
                       FLOWER_PASSWORD="smoke-flower-password")
        dotenv.write_text("".join(f"{k}={v}\n" for k, v in example.items()))
        compose = load_compose(COMPOSE_FILE)
        self.services = interpolate_tree(compose["services"], parse_env_file(dotenv))

    # URLs and paths --------------------------------------------------------------------------

    def _local_url(self, value: str) -> str:
        parts = urlsplit(value)
        if parts.hostname == "postgres":
            from sqlalchemy.engine import make_url

            url = make_url(value)
            assert url.drivername == "postgresql+psycopg", url.drivername
            # The compose role `gradtrace` and its password exist only in the container; the local
            # server trusts `postgres` on 127.0.0.1. The test's own database replaces `gradtrace`.
            return url.set(host=PG_HOST, port=PG_PORT, username=PG_ADMIN_USER, password=None,
                           database=self.db_name).render_as_string(hide_password=False)
        if parts.hostname == "redis":
            assert parts.scheme == "redis" and parts.password, \
                "compose must pass the Redis password in the broker URL"
            # The machine's Redis has no requirepass, so the password is stripped for the local
            # run (Redis rejects AUTH when no password is configured). DB 9 isolates the test.
            return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
        return value

    def _local_path(self, value: str, service: dict, instance: str) -> str:
        if not value.startswith("/"):
            return value
        for mount in service.get("volumes") or []:
            source, target = mount.split(":")[:2]
            if not source.startswith((".", "/")) and (value == target or
                                                      value.startswith(target + "/")):
                # A named volume: one folder shared by every service that mounts it.
                return str(self.tmp / "volumes" / source / value[len(target):].lstrip("/"))
        if value.startswith("/data/"):
            # Inside the container's own filesystem: one folder per container.
            return str(self.tmp / "containers" / instance / value.lstrip("/"))
        return value

    def env_for(self, name: str, instance: str, **extra: str) -> dict[str, str]:
        service = self.services[name]
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            # The container user's home; never the real one of whoever runs the tests.
            "HOME": str(self.tmp / "containers" / instance / "home"),
            "LANG": "C.UTF-8",
            # Like the wheel installed in the image: the project's packages are regular packages
            # on sys.path (the editable install's meta-path finder would lose against the
            # namespace portion WORKDIR/service/ that holds only gunicorn_conf.py).
            "PYTHONPATH": str(ROOT),
        }
        env.update(_image_env())
        env.update(environment_of(service))
        for key, value in list(env.items()):
            env[key] = self._local_path(self._local_url(value), service, instance)
        env.update(extra)
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        return env

    def workdir(self, instance: str) -> Path:
        path = self.tmp / "containers" / instance / "app"
        if not path.exists():
            _build_workdir(path)
        return path

    def argv(self, name: str) -> list[str]:
        command = self.services[name]["command"]
        return shlex.split(command) if isinstance(command, str) else list(command)

    # processes -------------------------------------------------------------------------------

    def run(self, name: str, instance: str, argv: list[str], timeout: float,
            **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env_for(name, instance, **extra_env),
                              cwd=self.workdir(instance), capture_output=True, text=True,
                              timeout=timeout)

    def start(self, name: str, instance: str, hostname: str | None = None,
              **extra_env: str) -> None:
        argv = self.argv(name)
        if hostname is not None:
            if self.use_unshare:
                # Own UTS namespace: `%h` expands to this host name, as in a container.
                argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
                        hostname, *argv]
            else:
                argv = [a.replace("%h", hostname) for a in argv]
        log = self.tmp / f"{instance}.log"
        self.logs[instance] = log
        with open(log, "wb") as fh:
            self.procs[instance] = subprocess.Popen(
                argv, env=self.env_for(name, instance, **extra_env), cwd=self.workdir(instance),
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)

    def assert_alive(self) -> None:
        for instance, proc in self.procs.items():
            assert proc.poll() is None, \
                f"{instance} exited with {proc.returncode}:\n{self.tail(instance)}"

    def tail(self, instance: str, lines: int = 60) -> str:
        log = self.logs.get(instance)
        if log is None or not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self) -> None:
        """SIGTERM each process group (what `docker compose stop` sends), then SIGKILL."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():
            # The group may outlive its leader (pool children): kill what is left of it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture
def smoke_db():
    _require_environment()
    import psycopg

    name = f"gradtrace_smoke_{secrets.token_hex(4)}"
    admin = dict(host=PG_HOST, port=PG_PORT, user=PG_ADMIN_USER, dbname=PG_ADMIN_DB,
                 autocommit=True, connect_timeout=5)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def smoke_redis():
    _require_environment()
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=5)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


# --- the test ----------------------------------------------------------------------------------

def _wait(predicate, timeout: float, what: str, harness: Harness, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        harness.assert_alive()
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def _token_from(stdout: str) -> str:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    assert lines, "gradtrace-admin create-token printed nothing"
    return lines[-1].split()[-1]


def test_compose_services_run_as_local_processes(tmp_path, smoke_db, smoke_redis):
    import httpx

    port = _free_port()
    harness = Harness(tmp_path, smoke_db, port, use_unshare=_unshare_works())
    base = f"http://127.0.0.1:{port}"
    try:
        # migrate: a one-shot that must exit 0 before api and worker start.
        res = harness.run("migrate", "migrate", harness.argv("migrate"), timeout=120)
        assert res.returncode == 0, f"migrate failed:\n{res.stdout}\n{res.stderr}"

        # PORT: the container listens on 8000; locally a free port stands in for it.
        harness.start("api", "api", PORT=str(port))
        for host in WORKER_HOSTS:
            harness.start("worker", host, hostname=host)

        def ready():
            r = httpx.get(f"{base}/ready", timeout=5)
            return r.status_code == 200

        _wait(ready, READY_TIMEOUT_S, "api /ready", harness)
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200

        # The api container's healthcheck command, as docker would run it.
        hc = harness.services["api"]["healthcheck"]["test"]
        assert hc[0] == "CMD"
        res = harness.run("api", "api", hc[1:], timeout=30, PORT=str(port))
        assert res.returncode == 0, f"api healthcheck failed: {res.stdout}{res.stderr}"

        # Each worker's healthcheck (celery inspect ping of its own node name) doubles as the
        # wait for it to be consuming, so both compete for the jobs from the start.
        hc = harness.services["worker"]["healthcheck"]["test"]
        assert hc[0] == "CMD-SHELL"
        for host in WORKER_HOSTS:
            def pinged(host=host):
                r = harness.run("worker", host, ["sh", "-c", hc[1]], timeout=60,
                                HOSTNAME=host)
                return r.returncode == 0 or None

            _wait(pinged, READY_TIMEOUT_S, f"worker healthcheck of {host}", harness, 1.0)

        # docker compose exec api gradtrace-admin create-token smoke
        res = harness.run("api", "api", ["gradtrace-admin", "create-token", "smoke"], timeout=60)
        assert res.returncode == 0, f"create-token failed:\n{res.stdout}\n{res.stderr}"
        token = _token_from(res.stdout)
        headers = {"Authorization": f"Bearer {token}"}

        with httpx.Client(base_url=base, headers=headers, timeout=15) as client:
            r = client.post("/v1/datasets", json={"name": "xor", "builtin": "xor"})
            assert r.status_code == 201, r.text
            dataset_id = r.json()["id"]
            job_ids = []
            for i in range(N_JOBS):
                r = client.post("/v1/jobs", json={**JOB_BODY, "dataset_id": dataset_id,
                                                  "name": f"xor-{i}"})
                assert r.status_code == 202, r.text
                job_ids.append(r.json()["id"])

            from jobs.models import FINISHED_STATUSES

            def all_done():
                jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids]
                return jobs if all(j["status"] in FINISHED_STATUSES for j in jobs) else None

            jobs = _wait(all_done, JOBS_TIMEOUT_S, f"{N_JOBS} jobs to finish", harness, 1.0)

        statuses = {j["id"]: j["status"] for j in jobs}
        assert set(statuses.values()) == {"succeeded"}, statuses
        missing = [j["id"] for j in jobs if not j.get("worker")]
        assert not missing, ("job responses carry no `worker` field, so the test cannot tell "
                             f"which worker ran them: {missing}")
        workers = {j["worker"] for j in jobs}
        print(f"jobs per worker: { {w: sum(j['worker'] == w for j in jobs) for w in workers} }")
        assert len(workers) >= 2, f"all {N_JOBS} jobs ran on one worker: {workers}"
        for worker in workers:
            assert any(host in worker for host in WORKER_HOSTS), \
                f"unexpected worker name {worker!r}; expected worker@{WORKER_HOSTS}"
        harness.assert_alive()
    finally:
        harness.stop_all()
        for instance in harness.logs:
            print(f"===== {instance} (last lines) =====\n{harness.tail(instance)}")
    # `docker compose stop` semantics: SIGTERM must be enough (warm shutdown for the idle
    # workers, graceful stop for gunicorn); a process that needed SIGKILL is a failure.
    killed = {i: p.returncode for i, p in harness.procs.items() if p.returncode != 0}
    assert not killed, f"not a clean exit on SIGTERM (exit codes): {killed}"
