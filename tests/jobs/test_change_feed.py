"""The job-change feed stops vouching for answers when its connection hangs without failing."""
from __future__ import annotations

import socket
import threading
import time

from sqlalchemy.engine import make_url

from jobs.change_feed import JobChangeFeed
from tests.integration.services import PG_ADMIN_URL, wait_until


class FreezableProxy:
    """A TCP relay to PostgreSQL that can stop forwarding without closing anything, as a
    stalled network or a frozen proxy does."""

    def __init__(self, host: str, port: int):
        self.frozen = threading.Event()
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        try:
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._target)
                self._sockets += [client, server]
                for src, dst in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()
        except OSError:
            pass

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.01)
                dst.sendall(data)
        except OSError:
            pass


class Owner:
    def job_changed(self, job_id: str) -> None:
        pass


def test_a_hung_connection_is_distrusted_within_a_few_probes():
    server = make_url(PG_ADMIN_URL)
    proxy, owner = FreezableProxy(server.host or "127.0.0.1", server.port or 5432), Owner()
    url = server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    feed = JobChangeFeed(url, owner, probe_s=0.2)
    feed.start()
    try:
        wait_until(lambda: feed.live, timeout=10)
        generation = feed.generation
        proxy.frozen.set()
        frozen_at = time.monotonic()
        wait_until(lambda: not feed.live, timeout=10, every=0.01)
        # Three probes of 0.2 s (STALE_PROBES); TCP alone would notice after ~20 s.
        assert time.monotonic() - frozen_at < 3.0
        proxy.frozen.clear()  # the stalled probe completes: the same connection lives on
        wait_until(lambda: feed.live, timeout=5)
        assert feed.generation == generation
    finally:
        feed.stop()
        proxy.close()
