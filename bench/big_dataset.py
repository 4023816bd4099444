"""Big datasets end to end: upload seconds and peak memory of the API and the worker.

Generates an N x 100 float32 dataset (10 classes) as .npz and as CSV, starts the stack as
docker-compose runs it (gunicorn with service/gunicorn_conf.py, a `celery worker`, the
machine's PostgreSQL and Redis), then:
  1. uploads the .npz, the same .npz again, and the CSV, timing each and reading the peak
     RSS (VmHWM, reset before each upload through /proc/<pid>/clear_refs) of the gunicorn
     worker processes; the peer of each peak is the uploaded file's size;
  2. checks the second .npz upload got the same content hash and that one blob is stored;
  3. trains a small network for one epoch on each dataset and reads the peak RSS of the
     celery worker process against the dataset size plus the model size.
Usage::

    .venv/bin/python bench/big_dataset.py            # 1,000,000 x 100
    .venv/bin/python bench/big_dataset.py --quick    # 100,000 x 100

The generated files are cached in --data-dir (default /tmp/gradtrace-bench-big-<rows>).
"""
from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("GRADTRACE_TEST_PG",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GRADTRACE_BENCH_REDIS", "redis://127.0.0.1:6379/9")
FEATURES, CLASSES = 100, 10
MIB = 1024 * 1024


# --- data ----------------------------------------------------------------------------------

def make_files(rows: int, folder: Path) -> tuple[Path, Path]:
    """The dataset as .npz and CSV (generated once per size, then reused)."""
    folder.mkdir(parents=True, exist_ok=True)
    npz, csv = folder / "big.npz", folder / "big.csv"
    if npz.exists() and csv.exists():
        return npz, csv
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, FEATURES), dtype=np.float32)
    y = np.argmax(X[:, :CLASSES], axis=1).astype(np.int64)  # learnable labels
    np.savez(folder / "big.tmp.npz", X=X, y=y)
    with open(folder / "big.tmp.csv", "w") as f:
        f.write(",".join(f"f{j}" for j in range(FEATURES)) + ",label\n")
        for lo in range(0, rows, 20_000):
            block = np.column_stack([X[lo:lo + 20_000], y[lo:lo + 20_000]])
            np.savetxt(f, block, fmt=["%.7g"] * FEATURES + ["%d"], delimiter=",")
    os.replace(folder / "big.tmp.npz", npz)
    os.replace(folder / "big.tmp.csv", csv)
    return npz, csv


# --- process memory ------------------------------------------------------------------------

def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def reset_peaks(pids: list[int]) -> None:
    # "5" resets VmHWM to the current RSS (proc(5)); these are our own child processes.
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_mib(pids: list[int]) -> float:
    return max(status_kib(pid, "VmHWM") for pid in pids) / 1024


def rss_mib(pids: list[int]) -> float:
    return max(status_kib(pid, "VmRSS") for pid in pids) / 1024


# --- the stack -----------------------------------------------------------------------------

class Stack:
    """PostgreSQL database, gunicorn API and celery worker, as docker-compose runs them."""

    def __init__(self, tmp: Path, max_cells: int):
        self.db = f"gt_bench_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db}"'))
        self.port = 18000 + secrets.randbelow(2000)
        self.storage = tmp / "storage"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT),
                    "DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.db}",
                    "CELERY_BROKER_URL": REDIS_URL, "PORT": str(self.port),
                    "GRADTRACE_STATE_DIR": str(tmp / "state"),
                    "GRADTRACE_STORAGE_DIR": str(self.storage),
                    "GRADTRACE_TOKEN_PEPPER": secrets.token_hex(16),
                    "GRADTRACE_QUEUE": f"bench-big-{uuid.uuid4().hex[:8]}",
                    # The documented settings a deployment raises for big datasets.
                    "GRADTRACE_MAX_REQUEST_BYTES": str(4 * 1024 * MIB),
                    "GRADTRACE_MAX_DATASET_CELLS": str(max_cells),
                    "GRADTRACE_MAX_STORAGE_BYTES_PER_USER": str(32 * 1024 * MIB)}
        self.logs, self.procs = tmp, []
        bin_dir = Path(sys.executable).parent
        self._run([str(bin_dir / "alembic"), "upgrade", "head"])
        self.token = self._run([str(bin_dir / "gradtrace-admin"), "create-token", "bench"]
                               ).stdout.split()[0]
        self.api = self._start("api", [str(bin_dir / "gunicorn"), "--config",
                                       "service/gunicorn_conf.py", "service.wsgi:app"])
        self.worker = self._start("worker", [str(bin_dir / "celery"), "-A", "worker.entry",
                                             "worker", "--loglevel=INFO", "--concurrency=1",
                                             "--hostname=bench@%h"])
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=900,
                                   headers={"Authorization": f"Bearer {self.token}"})
        self._wait(lambda: self._ready(), "the API")
        self._wait(lambda: b" ready." in (tmp / "worker.log").read_bytes(), "the worker")

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=ROOT, env=self.env, check=True, capture_output=True,
                              text=True)

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc

    def _ready(self) -> bool:
        try:
            return self.client.get("/v1/datasets").status_code == 200
        except httpx.HTTPError:
            return False

    def _wait(self, predicate, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not start; logs in {self.logs}")
            time.sleep(0.3)

    def api_workers(self) -> list[int]:
        return children(self.api.pid)

    def pool_processes(self) -> list[int]:
        # The worker runs a "threads" pool (jobs/queue_config.py): jobs train in the main
        # process; children are counted too in case the pool is configured otherwise.
        return [self.worker.pid, *children(self.worker.pid)]

    def stop(self) -> None:
        for proc, log in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))
        self.admin.dispose()


# --- measurements --------------------------------------------------------------------------

def upload(stack: Stack, path: Path, name: str, **form: str) -> tuple[dict, float, float]:
    """POST the file; returns (dataset, seconds, peak RSS MiB of the API workers)."""
    pids = stack.api_workers()
    reset_peaks(pids)
    started = time.perf_counter()
    with path.open("rb") as f:
        resp = stack.client.post("/v1/datasets", data={"name": name, **form},
                                 files={"file": (path.name, f)})
    seconds = time.perf_counter() - started
    if resp.status_code != 201:
        raise RuntimeError(f"upload of {path.name} failed: {resp.status_code} {resp.text[:500]}")
    return resp.json(), seconds, peak_mib(pids)


def train(stack: Stack, dataset: dict) -> tuple[dict, float, float, int]:
    """One epoch of a small network; (job, seconds, peak RSS MiB, parameters)."""
    hidden = 32
    body = {"dataset_id": dataset["id"], "name": "big", "loss": "cross_entropy",
            "network": {"layers": [{"units": hidden, "activation": "relu"},
                                   {"units": CLASSES, "activation": "softmax"}]},
            "optimizer": {"name": "adam", "learning_rate": 0.01},
            "training": {"epochs": 1, "batch_size": 256, "seed": 0, "dtype": "float32"}}
    params = (FEATURES + 1) * hidden + (hidden + 1) * CLASSES
    pool = stack.pool_processes()
    reset_peaks(pool)
    started = time.perf_counter()
    resp = stack.client.post("/v1/jobs", json=body)
    if resp.status_code != 202:
        raise RuntimeError(f"job refused: {resp.status_code} {resp.text[:500]}")
    job_id, peak = resp.json()["id"], 0.0
    while True:
        peak = max(peak, peak_mib(pool))  # polled too, in case the pool process is replaced
        job = stack.client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    peak = max(peak, peak_mib(pool))
    return job, time.perf_counter() - started, peak, params


def blob_count(storage: Path) -> int:
    return sum(1 for p in (storage / "datasets").rglob("*.npz"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    folder = args.data_dir or Path(tempfile.gettempdir()) / f"gradtrace-bench-big-{rows}"
    t0 = time.perf_counter()
    npz, csv = make_files(rows, folder)
    print(f"data: {rows:,} x {FEATURES} float32, {CLASSES} classes "
          f"(ready in {time.perf_counter() - t0:.0f} s; cached in {folder})", flush=True)
    with tempfile.TemporaryDirectory(prefix="gradtrace-bench-big-") as tmp:
        stack = Stack(Path(tmp), max_cells=rows * (FEATURES + 1))
        try:
            report(stack, npz, csv, rows)
        finally:
            stack.stop()
    print(f"load average after: {open('/proc/loadavg').read().strip()}")


def report(stack: Stack, npz: Path, csv: Path, rows: int) -> None:
    print(f"load average before: {open('/proc/loadavg').read().strip()}")
    api_idle, worker_idle = rss_mib(stack.api_workers()), rss_mib(stack.pool_processes())
    print(f"idle RSS: API worker {api_idle:.0f} MiB, celery worker {worker_idle:.0f} MiB")
    print("\n| upload | file MiB | seconds | API peak RSS MiB | peak - idle MiB | "
          "(peak - idle) / file |")
    print("|---|---:|---:|---:|---:|---:|")
    results = {}
    for label, path, form in (("npz", npz, {}), ("npz again", npz, {}),
                              ("csv", csv, {"target": "label"})):
        size = path.stat().st_size / MIB
        dataset, seconds, peak = upload(stack, path, f"big {label}", **form)
        results[label] = dataset
        print(f"| {label} | {size:.0f} | {seconds:.1f} | {peak:.0f} | {peak - api_idle:.0f} | "
              f"{(peak - api_idle) / size:.2f} |", flush=True)
    same = results["npz"]["sha256"] == results["npz again"]["sha256"]
    print(f"\nsecond .npz upload: same sha256 {same}; blobs stored: "
          f"{blob_count(stack.storage)} (npz + csv; the csv's X is float64, so its own blob)")
    print("\n| trained on | status | seconds | dataset MiB | model MiB | worker peak RSS MiB | "
          "peak - idle MiB | bound 2 x data + model MiB | peak / (data + model) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, itemsize in (("npz", 4), ("csv", 8)):  # the CSV's features are stored as float64
        job, seconds, peak, params = train(stack, results[label])
        data_mib = rows * (FEATURES * itemsize + 8) / MIB
        model_mib = params * 4 / MIB
        status = job["status"]
        if status != "succeeded":
            status += f": {job['error']}"
        print(f"| {label} | {status} | {seconds:.1f} | {data_mib:.0f} | {model_mib:.2f} | "
              f"{peak:.0f} | {peak - worker_idle:.0f} | {2 * data_mib + model_mib:.0f} | "
              f"{peak / (data_mib + model_mib):.2f} |", flush=True)
    print("(training: 1 epoch of a 100-32-10 relu/softmax network, batch 256, float32, shuffled)")

if __name__ == "__main__":
    main()
