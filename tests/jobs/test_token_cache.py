"""The API's token cache (jobs/auth.authenticate_cached): look-ups when an entry is due."""
import threading
import time

import pytest

import jobs.auth
from jobs.auth import authenticate_cached, hash_token
from jobs.errors import Unauthorized
from tests.factories import make_token

PEPPER = "test-pepper"
THREADS = 8


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.setattr(jobs.auth, "_valid", {})


def slow_sessions(session_factory, opened: list):
    """A `session_of` whose sessions open slowly, as a busy pool's do: threads that each
    decide to look the token up overlap inside the look-up."""
    def session_of():
        opened.append(1)
        time.sleep(0.05)
        return session_factory()
    return session_of


def together(n: int, call) -> list:
    """Run ``call()`` in n threads released at once; return what each returned or raised."""
    start, results = threading.Barrier(n), [None] * n

    def run(i):
        start.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("cached", [False, True], ids=["unknown to the cache", "due again"])
def test_threads_finding_an_entry_due_look_it_up_once(session_factory, monkeypatch, cached):
    digest = hash_token(make_token(session_factory, PEPPER, "ann"), PEPPER)
    opened = []
    session_of = slow_sessions(session_factory, opened)
    if cached:
        monkeypatch.setattr(jobs.auth, "TOKEN_CACHE_S", 0.2)
        authenticate_cached(session_of, digest)
        time.sleep(0.25)
        opened.clear()
    callers = together(THREADS, lambda: authenticate_cached(session_of, digest))
    assert len(opened) == 1
    assert {c.name for c in callers} == {"ann"}


def test_an_unknown_token_is_looked_up_by_every_request_and_not_cached(session_factory):
    digest = hash_token("gt_not-a-token", PEPPER)
    opened = []
    results = together(4, lambda: authenticate_cached(slow_sessions(session_factory, opened), digest))
    assert all(isinstance(r, Unauthorized) for r in results)
    assert len(opened) == 4 and digest not in jobs.auth._valid
