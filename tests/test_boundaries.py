"""Package boundaries: the engine imports only numpy; the API never imports the worker;
the worker never imports Flask."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.services import ROOT


def _modules_after(import_stmt: str) -> set[str]:
    code = f"{import_stmt}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


@pytest.mark.parametrize("stmt, forbidden", [
    ("import mlp", {"flask", "celery", "sqlalchemy", "pydantic", "jobs", "service", "worker"}),
    ("import jobs.training, jobs.submission", {"flask", "celery", "service", "worker"}),
    ("from service import create_app", {"worker"}),
    ("import worker.entry", {"flask", "service"}),
])
def test_import_boundaries(stmt, forbidden):
    assert not (_modules_after(stmt) & forbidden)
