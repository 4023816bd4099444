"""Real headless Chromium (Debian's `chromium`, driven by Playwright) against the app served
over HTTP with a real worker process on the embedded stack (SQLite + kombu's SQL broker).

Under CI=true a missing browser fails the tests instead of skipping them. Screenshots of
failed tests go to artifacts/screenshots/.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from jobs.settings import Settings
from tests.factories import make_token
from tests.integration.services import HttpServer, WorkerProcess, migrate, unique_queue, worker_env

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("GRADTRACE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def _missing(what: str):
    message = f"{what} (run `make browser-deps`)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: browser tests must not skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _missing(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Live:
    """The served app, its settings and a token for user alice."""

    def __init__(self, settings: Settings, server: HttpServer, factory):
        self.settings, self.server, self.url = settings, server, server.url
        self.token = make_token(factory, settings.token_pepper, "alice")

    def client(self):
        return self.server.client(self.token)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from jobs.db import make_engine, make_sessionmaker
    from service import create_app

    tmp = tmp_path_factory.mktemp("browser")
    settings = Settings.from_env(
        state_dir=tmp / "state", database_url=f"sqlite:///{tmp / 'gradtrace.db'}",
        broker_url=f"sqla+sqlite:///{tmp / 'broker.db'}", storage_dir=tmp / "storage",
        token_pepper="browser-pepper", queue=unique_queue(), heartbeat_s=1.0,
        events_poll_s=0.2)
    settings.ensure_dirs()
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    server = HttpServer(create_app(settings))
    worker = WorkerProcess(worker_env(settings), "browser-worker", tmp)
    try:
        worker.wait_ready()
        yield Live(settings, server, make_sessionmaker(engine))
    finally:
        worker.stop()
        server.stop()
        engine.dispose()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def page(browser, live, request):
    """A fresh browser context per test; console errors (CSP violations included) fail it."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    errors: list[str] = []
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.console_errors = errors
    yield tab
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
