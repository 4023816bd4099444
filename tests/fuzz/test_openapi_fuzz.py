"""Property-based fuzzing of the whole API from its own /openapi.json with schemathesis.

The app runs in this process on a loopback port (no broker: jobs stay queued, nothing
trains), authenticated as a real admin user so the admin routes are reached too. All
checks, all phases (examples, coverage, fuzzing, stateful through the document's links).
The seed is printed; rerun with GRADTRACE_FUZZ_SEED=<seed> to reproduce a failure and
GRADTRACE_FUZZ_EXAMPLES=<n> for a longer run (default keeps the test under ~2 minutes).
"""
from __future__ import annotations

import logging
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.db import make_engine, make_sessionmaker
from jobs.models import Base
from jobs.settings import Settings
from tests.factories import make_token
from tests.integration.services import HttpServer

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("GRADTRACE_FUZZ_EXAMPLES", "15"))


@pytest.fixture
def fuzz_target(tmp_path):
    """The app over HTTP with limits that let the fuzzer through, and an admin token."""
    settings = Settings.from_env(
        state_dir=tmp_path / "state", database_url=f"sqlite:///{tmp_path / 'fuzz.db'}",
        broker_url="memory://", storage_dir=tmp_path / "storage",
        rate_limit="1000000 per minute", auth_failure_rate_limit="1000000 per minute",
        max_active_jobs_per_user=100_000,
        # A queued job's event stream would stay open for an hour: end it quickly.
        events_max_s=1.0, events_poll_s=0.1)
    settings.ensure_dirs()
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    token = make_token(make_sessionmaker(engine), settings.token_pepper, "fuzzer", admin=True)
    from service import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = HttpServer(create_app(settings))
    yield server.url, token
    server.stop()
    engine.dispose()


def test_fuzz_whole_api_finds_no_failure(fuzz_target, tmp_path):
    url, token = fuzz_target
    seed = int(os.environ.get("GRADTRACE_FUZZ_SEED") or random.randrange(2**31))
    print(f"schemathesis seed {seed}, max examples {EXAMPLES}", flush=True)
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
           f"{url}/openapi.json", "--header", f"Authorization: Bearer {token}",
           "--checks", "all", "--mode", "all",
           "--phases", "examples,coverage,fuzzing,stateful",
           "--max-examples", str(EXAMPLES), "--seed", str(seed), "--workers", "1",
           "--request-timeout", "30", "--no-color", "--report", "junit",
           "--report-dir", str(tmp_path / "report")]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    summary = result.stdout[result.stdout.find("SUMMARY"):] or result.stdout[-4000:]
    print(summary)
    assert result.returncode == 0, f"seed {seed}:\n{result.stdout[-20000:]}\n{result.stderr[-3000:]}"
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", summary)
    assert selected and len(set(selected.groups())) == 1, "every operation must be fuzzed"
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert cases and int(cases[1]) == int(cases[2]) > 10 * int(selected[1]), summary
