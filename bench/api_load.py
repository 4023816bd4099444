"""The API under polling load, against a bare Flask endpoint (issue 8, target 3).

Target: with gunicorn as docker-compose.yml runs it, 50 concurrent clients polling
GET /v1/jobs/{id} and GET /v1/jobs/{id}/metrics?since_epoch=... while jobs train: 0 errors,
p99 under 100 ms, throughput at least half of a bare Flask endpoint served the same way.

What runs, all on loopback:
- a fresh PostgreSQL database (migrated with alembic) and the machine's Redis (broker and
  rate-limit counters, under a queue name of its own);
- the API exactly as compose's `api` service: `gunicorn --config service/gunicorn_conf.py
  service.wsgi:app`, configured from the environment; only the bind address is overridden
  (GUNICORN_CMD_ARGS=--bind=127.0.0.1:<free port>), and GRADTRACE_RATE_LIMIT is raised to
  10,000,000 per minute so the benchmark measures serving, not the 429 path (the limiter stays
  on: every request still pays its Redis round trip);
- one real `celery -A worker.entry worker --concurrency=1` process training long jobs
  (spirals, 64-64-1, metrics recorded every epoch) for the whole run;
- the peer: bench/api_load_peer.py (two routes, constant small JSON) under gunicorn with the
  same config file, hence the same worker class, processes, threads and access log.

Load: `wrk -t2 -c50 --latency -s bench/api_poll.lua`, alternating the two paths over the
jobs, since_epoch following each job's progress (see the Lua file). Two load models:
- closed loop (think time 0): 50 clients each sending the next request as soon as the last one
  answered; this saturates the server and gives the throughput ratio;
- polling (think time --think-ms, default 250 ms): each client waits between polls, as a
  dashboard does; p99 under 100 ms is judged here as well as in the closed loop.
The API and the peer alternate run by run while the worker trains; best-of-N throughput
and the p99 of that best run are reported, with the load average.

    .venv/bin/python bench/api_load.py              # 60 s runs, 2 rounds
    .venv/bin/python bench/api_load.py --quick      # 10 s runs, 1 round

Needs wrk (`apt-get install -y wrk`), PostgreSQL on 127.0.0.1:5432 and Redis on :6379.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from jobs.db import make_engine, make_sessionmaker  # noqa: E402
from jobs.settings import Settings  # noqa: E402
from tests.factories import make_token  # noqa: E402
from tests.integration.services import (WorkerProcess, fresh_postgres_database,  # noqa: E402
                                        migrate, redis_url, unique_queue, worker_env)

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "api_poll.lua"
REDIS_DB = 12
BENCH_RATE_LIMIT = "10000000 per minute"
CONNECTIONS = 50
N_JOBS = 3
JOB_SPEC = {"network": {"layers": [{"units": 64, "activation": "tanh"},
                                   {"units": 64, "activation": "relu"},
                                   {"units": 1, "activation": "sigmoid"}]},
            "loss": "binary_cross_entropy", "optimizer": {"name": "adam", "learning_rate": 0.001},
            "training": {"epochs": 100_000, "batch_size": 64, "seed": 0},
            "record": {"every_epochs": 1}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """`gunicorn --config service/gunicorn_conf.py <app>` on a free loopback port."""

    def __init__(self, app: str, env: dict, log: Path, extra: tuple[str, ...] = (),
                 cmd_args: str = ""):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**env, "GUNICORN_CMD_ARGS": f"--bind=127.0.0.1:{self.port} {cmd_args}".strip()}
        self._log = open(log, "wb")
        self.log = log
        cmd = [sys.executable, "-m", "gunicorn", "--config", "service/gunicorn_conf.py",
               *extra, app]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"gunicorn not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def api_env(settings: Settings) -> dict:
    """What compose's api service sets (DATABASE_URL, broker, pepper, dirs), plus the
    benchmark's raised per-user rate limit."""
    env = worker_env(settings)
    env["GRADTRACE_RATE_LIMIT"] = BENCH_RATE_LIMIT
    env["GRADTRACE_BLAS_THREADS"] = "1"
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def start_jobs(url: str, token: str) -> list[str]:
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        ds = http.post("/v1/datasets", json={"name": "spirals", "builtin": "spirals",
                                            "n_samples": 2000, "noise": 0.2, "seed": 0})
        ds.raise_for_status()
        ids = []
        for i in range(N_JOBS):
            spec = {**JOB_SPEC, "training": {**JOB_SPEC["training"], "seed": i}}
            r = http.post("/v1/jobs", json={**spec, "name": f"load-{i}",
                                            "dataset_id": ds.json()["id"]})
            r.raise_for_status()
            ids.append(r.json()["id"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # polled until the first job has some epochs
            job = http.get(f"/v1/jobs/{ids[0]}").json()
            if job["status"] == "running" and job["progress"]["epoch"] >= 20:
                return ids
            time.sleep(0.5)
        raise TimeoutError(f"the first job did not start training: {job}")


def cancel_jobs(url: str, token: str, ids: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        for job_id in ids:
            http.post(f"/v1/jobs/{job_id}/cancel")


def run_wrk(url: str, token: str, jobs: list[str], seconds: int, think_ms: int) -> dict:
    # The token goes to wrk through its environment, never on a command line.
    env = {**os.environ, "GT_TOKEN": token, "GT_JOBS": ",".join(jobs),
           "GT_DELAY_MS": str(think_ms), "GT_LAG": "10"}
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "--latency",
           "-s", str(LUA), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr}")
    return parse_wrk(out.stdout)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(text: str) -> dict:
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
              "requests": int(re.search(r"(\d+) requests in", text).group(1)),
              "non2xx": 0, "socket_errors": 0}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        result[f"p{pct}"] = _ms(m.group(1), m.group(2))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        result["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        result["socket_errors"] = sum(int(g) for g in m.groups())
    return result


def server_times(log: Path) -> dict[str, tuple[int, float, float]]:
    """From gunicorn's access log (%(U)s path, %(L)s seconds): per route, the count and
    the server-side p50/p99 in ms (time inside the worker, without accept queueing)."""
    times: dict[str, list[float]] = {"job": [], "metrics": []}
    for line in log.read_text(errors="replace").splitlines():
        m = re.search(r" GET (/v1/jobs/[^ ]+) HTTP/[\d.]+ \d+ \S+ ([\d.]+)s ", line)
        if m:
            times["metrics" if m.group(1).endswith("/metrics") else "job"].append(
                float(m.group(2)) * 1e3)
    out = {}
    for route, values in times.items():
        values.sort()
        if values:
            out[route] = (len(values), values[len(values) // 2],
                          values[min(len(values) - 1, int(len(values) * 0.99))])
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def best(runs: list[dict]) -> dict:
    return max(runs, key=lambda r: r["rps"])


def row(name: str, runs: list[dict]) -> str:
    b = best(runs)
    errors = sum(r["non2xx"] + r["socket_errors"] for r in runs)
    return (f"| {name:<26} | {b['rps']:>9.0f} | {b['p50']:>8.1f} | {b['p99']:>8.1f} | "
            f"{max(r['p99'] for r in runs):>12.1f} | {errors:>6} | {len(runs)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s runs, one round")
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--think-ms", type=int, default=250,
                        help="client think time of the polling model (ms)")
    parser.add_argument("--keep-log", type=Path, default=None,
                        help="copy gradtrace's access log here (per-request server times)")
    parser.add_argument("--gunicorn-args", default="",
                        help="extra GUNICORN_CMD_ARGS for both servers, e.g. '--workers=4'")
    args = parser.parse_args()
    seconds = args.seconds or (10 if args.quick else 60)
    rounds = args.rounds or (1 if args.quick else 2)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu)")

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        db_url = stack.enter_context(fresh_postgres_database())
        settings = Settings.from_env(state_dir=tmp / "state", database_url=db_url,
                                     broker_url=redis_url(REDIS_DB), storage_dir=tmp / "storage",
                                     token_pepper="bench-pepper-" + os.urandom(8).hex(),
                                     queue=unique_queue())
        settings.ensure_dirs()
        migrate(db_url)
        engine = make_engine(db_url)
        stack.callback(engine.dispose)
        token = make_token(make_sessionmaker(engine), settings.token_pepper, "load-bench")
        env = api_env(settings)

        api = Gunicorn("service.wsgi:app", env, tmp / "api.log", cmd_args=args.gunicorn_args)
        stack.callback(api.stop)
        peer = Gunicorn("api_load_peer:app", env, tmp / "peer.log", ("--pythonpath", "bench"),
                        cmd_args=args.gunicorn_args)
        stack.callback(peer.stop)
        worker = WorkerProcess(env, "load-worker", tmp)
        stack.callback(worker.stop)
        api.wait_ready("/ready")
        peer.wait_ready("/v1/jobs/x")
        worker.wait_ready()
        jobs = start_jobs(api.url, token)
        stack.callback(cancel_jobs, api.url, token, jobs)

        results: dict[str, list[dict]] = {}
        loads = [loadavg()]
        for _ in range(rounds):
            for model, think in (("closed loop", 0), (f"polling {args.think_ms} ms", args.think_ms)):
                for name, server in (("gradtrace", api), ("bare Flask", peer)):
                    r = run_wrk(server.url, token, jobs, seconds, think)
                    results.setdefault(f"{name}, {model}", []).append(r)
                    print(f"  {name:<10} {model:<14} {r['rps']:8.0f} req/s  p50 {r['p50']:6.1f} ms"
                          f"  p99 {r['p99']:6.1f} ms  non-2xx {r['non2xx']}  socket errors "
                          f"{r['socket_errors']}  (load {loadavg()})", flush=True)
            loads.append(loadavg())
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as h:
            epochs = [h.get(f"/v1/jobs/{j}").json()["progress"]["epoch"] for j in jobs]
        inside = server_times(api.log)
        if args.keep_log is not None:
            shutil.copyfile(api.log, args.keep_log)

    print(f"\n{seconds} s runs, {rounds} round(s), {CONNECTIONS} connections, wrk -t2; "
          f"rate limit raised to {BENCH_RATE_LIMIT} for the benchmark; "
          f"GUNICORN_CMD_ARGS extra: {args.gunicorn_args or '(none)'}")
    print(f"epochs trained meanwhile per job: {epochs}; load average during: {' -> '.join(loads)}")
    print("| run                        |   req/s * | p50 ms * | p99 ms * | worst p99 ms | errors | n |")
    print("|----------------------------|-----------|----------|----------|--------------|--------|---|")
    for name, runs in results.items():
        print(row(name, runs))
    print("* of the best run (highest req/s); errors: non-2xx + socket errors, all runs")
    for route, (n, p50, p99) in inside.items():
        print(f"gradtrace server-side time, {route} requests (all runs, access log): n {n}, "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    closed = best(results["gradtrace, closed loop"])["rps"]
    peer_closed = best(results["bare Flask, closed loop"])["rps"]
    ratio = closed / peer_closed
    print(f"\nthroughput ratio gradtrace / bare Flask (closed loop): {ratio:.2f} "
          f"(target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
    for model in ("closed loop", f"polling {args.think_ms} ms"):
        p99 = best(results[f"gradtrace, {model}"])["p99"]
        errors = sum(r["non2xx"] + r["socket_errors"] for r in results[f"gradtrace, {model}"])
        print(f"gradtrace {model}: p99 {p99:.1f} ms (target < 100: "
              f"{'met' if p99 < 100 else 'NOT met'}), errors {errors} "
              f"(target 0: {'met' if errors == 0 else 'NOT met'})")


if __name__ == "__main__":
    main()
