"""CPU time of the PostgreSQL server on this machine, read from /proc (benchmarks only).

Counts every process named `postgres`: run it where the server is local and nothing
else uses it.
"""
from __future__ import annotations

import os
from pathlib import Path


def postgres_cpu() -> float:
    """CPU seconds used so far by every process named postgres on this machine."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
