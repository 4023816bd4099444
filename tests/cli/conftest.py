"""CLI tests run the installed `gradtrace` command as a subprocess against a live server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.live_server import start_live
from tests.factories import xor_job
from tests.integration.conftest import stack  # noqa: F401 - the shared integration fixture

GRADTRACE = Path(sys.executable).parent / "gradtrace"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def live(stack):  # noqa: F811
    yield from start_live(stack, "cli")


@pytest.fixture
def cli(live, tmp_path):
    """cli("status") runs `gradtrace status` in an empty folder with URL and token set."""
    def run(*args: str, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 120) -> Run:
        base = {k: v for k, v in os.environ.items() if not k.startswith("GRADTRACE_")}
        full_env = {**base, "GRADTRACE_URL": live.url, "GRADTRACE_TOKEN": live.token,
                    **(env or {})}
        full_env = {k: v for k, v in full_env.items() if v is not None}
        proc = subprocess.run([str(GRADTRACE), *args], cwd=cwd or tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        return Run(proc.returncode, proc.stdout, proc.stderr)
    return run


@pytest.fixture
def spec_file(tmp_path):
    """spec_file(epochs=50) -> path of a JSON XOR spec with those training settings."""
    def write(name: str = "spec.json", **training) -> Path:
        body = xor_job("", **training)
        del body["dataset_id"], body["name"]
        path = tmp_path / name
        path.write_text(json.dumps(body))
        return path
    return write


@pytest.fixture(scope="module")
def xor_id(live) -> str:
    from gradtrace.client import Client

    with Client(live.url, live.token) as client:
        return client.create_builtin_dataset("xor").id
