"""`make run`: migrate, make a local token, run the API and one worker in the foreground.

With no DATABASE_URL or broker set, everything lives under `.gradtrace/`: SQLite for the
data and kombu's SQL transport on a separate SQLite file as the broker. Development only:
deploy with docker compose.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

from jobs.auth import authenticate, get_or_create_user, issue_token
from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.errors import Unauthorized
from jobs.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
LOCAL_USER = "local"


def migrate(settings: Settings) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = settings.database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def local_token(settings: Settings) -> str:
    """Reuse `.gradtrace/token` if it still works, else issue a new one and save it."""
    path = settings.state_dir / "token"
    factory = make_sessionmaker(make_engine(settings.database_url))
    with session_scope(factory) as session:
        if path.exists():
            try:
                authenticate(session, path.read_text().strip(), settings.token_pepper)
                return path.read_text().strip()
            except Unauthorized:
                pass
        user = get_or_create_user(session, LOCAL_USER, is_admin=True)
        _, secret = issue_token(session, user, settings.token_pepper, label="make run")
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def commands(settings: Settings) -> dict[str, list[str]]:
    bin_dir = Path(sys.executable).parent
    return {
        "api": [str(bin_dir / "gunicorn"), "--config", str(ROOT / "service/gunicorn_conf.py"),
                "--bind", f"127.0.0.1:{settings.port}", "--workers", "1", "service.wsgi:app"],
        "worker": [str(bin_dir / "celery"), "-A", "worker.entry", "worker", "--loglevel=INFO",
                   "--concurrency=1", "--hostname=local@%h"],
    }


def _pump(name: str, stream) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>6} | {line.decode(errors='replace')}")
        sys.stdout.flush()


def supervise(procs: dict[str, list[str]], env: dict[str, str]) -> int:
    """Run the processes until one exits or we are interrupted; then stop them all."""
    running = {name: subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)
               for name, cmd in procs.items()}
    for name, proc in running.items():
        threading.Thread(target=_pump, args=(name, proc.stdout), daemon=True).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        if any(p.poll() is not None for p in running.values()):
            break
    for proc in running.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in running.values():
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return max((p.returncode or 0) for p in running.values())


def main() -> int:
    settings = Settings.from_env()
    settings.ensure_dirs()
    migrate(settings)
    token = local_token(settings)
    url = f"http://127.0.0.1:{settings.port}"
    print(f"gradtrace (development mode) on {url}\n  API docs: {url}/docs\n"
          f"  token (saved in {settings.state_dir / 'token'}): {token}\n"
          f"  database: {settings.database_url}\n  broker: {settings.broker_url}", flush=True)
    env = {**os.environ, "GRADTRACE_STATE_DIR": str(settings.state_dir.resolve()),
           "DATABASE_URL": settings.database_url, "CELERY_BROKER_URL": settings.broker_url,
           "GRADTRACE_STORAGE_DIR": str(settings.storage_dir)}
    return supervise(commands(settings), env)


if __name__ == "__main__":
    sys.exit(main())
