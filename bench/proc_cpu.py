"""CPU time of processes on this machine, read from /proc (benchmarks only)."""
from __future__ import annotations

import os
from pathlib import Path


def process_cpu(pid: int | str) -> float:
    """utime + stime of process `pid`, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU seconds used so far by every process named postgres on this machine: run it
    where the server is local and nothing else uses it."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres":
                total += process_cpu(pid)
        except OSError:  # the process ended
            continue
    return total
