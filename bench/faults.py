"""Soak of the fault suite: many more SIGKILLs than the CI run, and the figures it gives.

Runs tests/faults (real PostgreSQL, Redis and `celery worker` processes) with scenario 1
raised to `--kills` SIGKILLs, repeated `--rounds` times, and prints each round's table
plus the recovery time as a ratio of the lease TTL and of the broker-only alternative
(a SIGKILLed worker's message comes back only after Redis' visibility timeout).
Usage::

    .venv/bin/python bench/faults.py                 # 40 kills, all scenarios once
    .venv/bin/python bench/faults.py --kills 100 --only sigkill
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEASE_TTL_S = 2.0          # the suite's settings (tests/faults/conftest.py FAST)
BROKER_ONLY_S = 600.0      # visibility_timeout: when Redis alone would redeliver


def run_round(kills: int, only: str | None) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "figures.txt"
        env = {**os.environ, "GRADTRACE_FAULT_KILLS": str(kills),
               "GRADTRACE_FAULT_REPORT": str(report)}
        cmd = [sys.executable, "-m", "pytest", "-m", "faults", "tests/faults", "-q"]
        if only:
            cmd += ["-k", only]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        tail = "\n".join(done.stdout.splitlines()[-3:])
        if done.returncode != 0:
            print(done.stdout[-5000:], file=sys.stderr)
            raise SystemExit(f"fault suite failed (rc {done.returncode})")
        return (report.read_text() if report.exists() else "") + tail


def ratios(figures: str) -> str:
    match = re.search(r"1\. worker SIGKILLed.*?recovery p50 ([\d.]+) s, p95 ([\d.]+) s", figures)
    if not match:
        return ""
    p50, p95 = float(match.group(1)), float(match.group(2))
    return (f"recovery p50 {p50:.1f} s = {p50 / LEASE_TTL_S:.2f} x lease TTL; p95 {p95:.1f} s; "
            f"broker-only redelivery would take {BROKER_ONLY_S:.0f} s "
            f"({BROKER_ONLY_S / p95:.0f} x slower than our p95)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", help="pytest -k expression, e.g. sigkill")
    args = parser.parse_args()
    for n in range(1, args.rounds + 1):
        figures = run_round(args.kills, args.only)
        print(f"--- round {n}: {args.kills} SIGKILLs in scenario 1\n{figures}\n{ratios(figures)}",
              flush=True)


if __name__ == "__main__":
    main()
