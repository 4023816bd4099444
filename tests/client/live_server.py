"""A live API for client and CLI tests: the integration stack (embedded by default),
a real worker, and a second server whose streams end after one second."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest

from jobs.auth import authenticate
from jobs.db import session_scope
from jobs.submission import create_job
from tests.factories import XOR_SPEC
from tests.integration.services import HttpServer

# Client and CLI speak HTTP only; the database/broker pairs are covered by tests/service.
EMBEDDED_ONLY = pytest.mark.parametrize("stack", ["embedded"], indirect=True)


@dataclass
class Live:
    stack: object
    url: str
    token: str
    short_url: str

    def queued_job(self, dataset_id: str) -> str:
        return queued_job(self.stack, self.token, dataset_id)


def queued_job(stack, token: str, dataset_id: str) -> str:
    """A job inserted without publishing it: no worker takes it, so it stays queued."""
    with session_scope(stack.factory) as session:
        owner = authenticate(session, token, stack.settings.token_pepper)
        job, _ = create_job(session, stack.settings, owner_id=owner.id, dataset_id=dataset_id,
                            name="idle", raw_spec=copy.deepcopy(XOR_SPEC))
    return job.id


def start_live(stack, worker_name: str):
    from service import create_app

    stack.start_worker(worker_name)
    short = HttpServer(create_app(stack.settings.model_copy(
        update={"events_max_s": 1.0, "events_poll_s": 0.1})))
    try:
        yield Live(stack, stack.server.url, stack.token(worker_name), short.url)
    finally:
        short.stop()
