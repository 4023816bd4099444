"""A whole stack per test module: database, broker, API over HTTP, real worker processes.

`stack` is parametrised over PostgreSQL + Redis and the embedded default (SQLite and
kombu's SQL transport), so every integration test runs on both.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest

from jobs.db import make_engine, make_sessionmaker
from jobs.settings import Settings
from tests.factories import make_token
from tests.integration.services import (HttpServer, WorkerProcess, fresh_postgres_database,
                                        migrate, redis_url, unique_queue, worker_env)

REDIS_DB = 11


@dataclass
class Stack:
    kind: str
    settings: Settings
    env: dict
    server: HttpServer
    factory: object
    log_dir: object
    workers: list = field(default_factory=list)

    def token(self, name: str = "alice") -> str:
        return make_token(self.factory, self.settings.token_pepper, name)

    def start_worker(self, name: str) -> WorkerProcess:
        worker = WorkerProcess(self.env, name, self.log_dir)
        self.workers.append(worker)
        worker.wait_ready()
        return worker


@pytest.fixture(scope="module", params=["postgres+redis", "embedded"])
def stack(request, tmp_path_factory):
    from service import create_app

    tmp = tmp_path_factory.mktemp(request.param.replace("+", "_"))
    with ExitStack() as stack_cm:
        if request.param == "embedded":
            db_url, broker = f"sqlite:///{tmp / 'gradtrace.db'}", f"sqla+sqlite:///{tmp / 'broker.db'}"
        else:
            db_url = stack_cm.enter_context(fresh_postgres_database())
            broker = redis_url(REDIS_DB)
        settings = Settings.from_env(state_dir=tmp / "state", database_url=db_url,
                                     broker_url=broker, storage_dir=tmp / "storage",
                                     token_pepper="integration-pepper", heartbeat_s=1.0, queue=unique_queue(),
                                     lease_ttl_s=10.0, checkpoint_interval_s=1.0)
        settings.ensure_dirs()
        migrate(db_url)
        engine = make_engine(db_url)
        stack_cm.callback(engine.dispose)
        server = HttpServer(create_app(settings))
        stack_cm.callback(server.stop)
        built = Stack(request.param, settings, worker_env(settings), server,
                      make_sessionmaker(engine), tmp)
        stack_cm.callback(lambda: [w.stop() for w in built.workers])
        yield built
