"""Compute the runtime dependency closure of gradtrace from the installed venv.

Used two ways:
  * `python tests/deploy/deploy_lock.py > constraints.txt` regenerates the constraints file the
    Dockerfile builds wheels from (the versions installed in the current venv, runtime
    dependencies only: no test/bench tools, not the project itself);
  * tests/deploy/test_compose_schema.py checks constraints.txt still covers that closure.
"""
from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "gradtrace"


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    env = default_environment()
    if not extras:
        return req.marker.evaluate({**env, "extra": ""})
    return any(req.marker.evaluate({**env, "extra": e}) for e in extras)


def project_requirements() -> list[Requirement]:
    """The [project].dependencies of pyproject.toml (not the optional extras)."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in data["project"]["dependencies"]]


def runtime_closure() -> dict[str, tuple[str, str]]:
    """canonical name -> (distribution name as installed, installed version)."""
    seen: dict[str, tuple[str, str]] = {}
    visited: set[tuple[str, str]] = set()  # (name, "") = base deps, (name, extra) = an extra's
    todo: list[Requirement] = [r for r in project_requirements() if _applies(r, set())]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise RuntimeError(f"{req} is a runtime dependency but is not installed in this "
                               "environment; pip install -e . first") from None
        seen[name] = (dist.metadata["Name"], dist.version)
        for extra in ["", *sorted(req.extras)]:
            if (name, extra) in visited:
                continue
            visited.add((name, extra))
            for raw in dist.requires or []:
                sub = Requirement(raw)
                if extra == "":
                    if _applies(sub, set()):
                        todo.append(sub)
                elif sub.marker is not None and "extra" in str(sub.marker) \
                        and _applies(sub, {extra}):
                    todo.append(sub)
    return seen


def render() -> str:
    lines = [
        "# Runtime dependency pins for the gradtrace image (Dockerfile builds wheels from these).",
        "# Generated from the dev venv:",
        "#   .venv/bin/python tests/deploy/deploy_lock.py > constraints.txt",
        "# Runtime closure of [project].dependencies only; test/bench tools and gradtrace",
        "# itself excluded.",
    ]
    for _, (dist_name, version) in sorted(runtime_closure().items()):
        lines.append(f"{dist_name}=={version}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
