"""Connection failures become ServerUnavailable (no server needed)."""
from __future__ import annotations

import socket

import pytest

from gradtrace.client import Client, ServerUnavailable


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_raises_server_unavailable():
    with Client(f"http://127.0.0.1:{closed_port()}", "t") as nowhere:
        with pytest.raises(ServerUnavailable):
            nowhere.health()
        with pytest.raises(ServerUnavailable):
            list(nowhere.stream("x", max_retries=1))
