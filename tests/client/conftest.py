"""Client tests run against a live server and worker (see live_server.py)."""
from __future__ import annotations

import pytest

from gradtrace.client import Client
from tests.client.live_server import start_live
from tests.integration.conftest import stack  # noqa: F401 - the shared integration fixture


@pytest.fixture(scope="module")
def live(stack):  # noqa: F811
    yield from start_live(stack, "client")


@pytest.fixture(scope="module")
def gt(live):
    with Client(live.url, live.token) as client:
        yield client


@pytest.fixture(scope="module")
def xor_id(gt) -> str:
    return gt.create_builtin_dataset("xor").id
