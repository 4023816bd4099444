"""Helpers shared by the deploy tests: read docker-compose.yml and .env files, and interpolate
`${VAR}` references the way docker compose does. No Docker engine is involved."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONSTRAINTS = ROOT / "constraints.txt"
GUNICORN_CONF = ROOT / "service" / "gunicorn_conf.py"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

# The services that run the gradtrace image.
APP_SERVICES = ("migrate", "api", "worker")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# $$ | ${NAME} | ${NAME<op>arg} | $NAME ; op in :- - :? ? :+ +
_REF = re.compile(
    r"\$(?:(?P<escaped>\$)"
    rf"|\{{(?P<braced>{_NAME})(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>[^}}]*))?\}}"
    rf"|(?P<named>{_NAME}))")


class MissingVariable(ValueError):
    """A `${VAR:?msg}` / `${VAR?msg}` whose variable is unset (or empty, for `:?`)."""


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as plain data; YAML anchors and `<<` merge keys resolved."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose-style .env file (comments and blank lines skipped)."""
    env: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=VALUE: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-spec interpolation of one string value."""

    def repl(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op == ":?":
            if not value:
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op == "?":
            if value is None:
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if value is not None else ""
        return value or ""

    return _REF.sub(repl, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string in a loaded compose structure (keys are left alone)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(x, env) for x in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def iter_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for x in node:
            yield from iter_strings(x)
    elif isinstance(node, dict):
        for v in node.values():
            yield from iter_strings(v)


def references(node: Any) -> list[tuple[str, str | None, str]]:
    """Every (NAME, op, arg) interpolation reference in the strings of a loaded structure."""
    refs = []
    for s in iter_strings(node):
        for m in _REF.finditer(s):
            if m.group("escaped"):
                continue
            name = m.group("braced") or m.group("named")
            refs.append((name, m.group("op"), m.group("arg") or ""))
    return refs


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment`, list or mapping form, as a dict of (uninterpolated) strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, _, value = str(item).partition("=")
            out[key] = value
        return out
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends_on_of(service: Mapping[str, Any]) -> dict[str, str]:
    """target -> condition (`service_started` for the short list form)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def settings_env_names() -> dict[str, str]:
    """Upper-cased environment variable name -> the jobs.settings.Settings field it sets."""
    from pydantic import AliasChoices, AliasPath

    from jobs.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names[f"{prefix}{field_name}".upper()] = field_name
        elif isinstance(alias, str):
            names[alias.upper()] = field_name
        elif isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    names[choice.upper()] = field_name
                elif isinstance(choice, AliasPath) and isinstance(choice.path[0], str):
                    names[str(choice.path[0]).upper()] = field_name
        if field.alias:
            names[field.alias.upper()] = field_name
    return names


# --- Dockerfile ---------------------------------------------------------------------------------

def dockerfile_stages(path: Path = DOCKERFILE) -> list[list[str]]:
    """Instructions per stage (line continuations joined, comments and blank lines dropped)."""
    text = re.sub(r"\\\n", " ", Path(path).read_text(encoding="utf-8"))
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def stage_env(stage: list[str]) -> dict[str, str]:
    """The ENV KEY=VALUE pairs a stage sets."""
    import shlex

    env: dict[str, str] = {}
    for line in stage:
        if line.upper().startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def materialize_copies(stage: list[str], dest: Path) -> list[str]:
    """Reproduce a stage's build-context COPYs (relative targets, i.e. into its WORKDIR) under
    `dest`, skipping __pycache__; returns the copied sources."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for line in stage:
        parts = line.split()
        if parts[0].upper() != "COPY" or any(p.startswith("--from") for p in parts):
            continue
        *sources, target = [p for p in parts[1:] if not p.startswith("--")]
        if target.startswith("/"):
            raise ValueError(f"absolute COPY target not handled: {line}")
        for src in sources:
            src_path = ROOT / src
            out = dest / target
            if target.endswith("/") or target in (".", "./"):
                out = out / src_path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            if src_path.is_dir():
                shutil.copytree(src_path, out,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src_path, out)
            copied.append(src)
    return copied
