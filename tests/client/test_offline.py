"""Client behaviour that needs no server: connection failures, import boundaries."""
from __future__ import annotations

import socket
import subprocess
import sys

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


def test_client_and_cli_import_nothing_server_side_nor_matplotlib():
    code = "import gradtrace.cli, gradtrace.client, sys; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = {name.split(".")[0] for name in out.split()}
    # matplotlib is imported only by `compare -o`: it costs most of a second at start-up.
    assert not loaded & {"jobs", "service", "worker", "mlp", "flask", "sqlalchemy", "celery",
                         "matplotlib"}
