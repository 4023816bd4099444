"""The API's token cache (jobs/auth.authenticate_cached): look-ups when an entry is due."""
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

import jobs.auth
from jobs.auth import Caller, authenticate_cached, hash_token
from jobs.errors import Unauthorized
from tests.factories import make_token

PEPPER = "test-pepper"
THREADS = 8


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.setattr(jobs.auth, "_valid", {})


class SlowSessions:
    """A `session_of` whose sessions open after ``delay`` s, as a busy pool's do: threads
    that each decide to look the token up overlap inside the look-up. Counts the calls
    and the most that were in progress at once; closes its sessions at the end."""

    def __init__(self, factory, delay=0.05):
        self.factory, self.delay, self.sessions = factory, delay, []
        self.calls = self.running = self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.delay)
        with self._lock:
            self.running -= 1
            session = self.factory()
            self.sessions.append(session)
        return session

    def close(self):
        for session in self.sessions:
            session.close()


@pytest.fixture
def slow(session_factory):
    made = []

    def make(delay=0.05):
        made.append(SlowSessions(session_factory, delay))
        return made[-1]

    yield make
    for sessions in made:
        sessions.close()


@pytest.fixture
def digest(session_factory):
    return hash_token(make_token(session_factory, PEPPER, "ann"), PEPPER)


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
def test_threads_finding_an_entry_due_look_it_up_once(slow, digest, monkeypatch, cached):
    sessions = slow()
    if cached:
        monkeypatch.setattr(jobs.auth, "TOKEN_CACHE_S", 0.2)
        authenticate_cached(sessions, digest)
        time.sleep(0.25)
        sessions.calls = 0
    callers = together(THREADS, lambda: authenticate_cached(sessions, digest))
    assert sessions.calls == 1
    assert {c.name for c in callers} == {"ann"}


def test_a_slow_database_does_not_line_the_requests_up(slow, digest, monkeypatch):
    # A look-up slower than TOKEN_CACHE_S: past that wait, the others look up side by side
    # (during an outage each would otherwise wait out the one before it).
    monkeypatch.setattr(jobs.auth, "TOKEN_CACHE_S", 0.1)
    sessions = slow(delay=0.4)
    callers = together(4, lambda: authenticate_cached(sessions, digest))
    assert {c.name for c in callers} == {"ann"}
    assert sessions.most_at_once > 1


def test_an_answer_another_thread_got_is_refused_once_the_token_has_expired(slow, digest):
    # A request waits while another thread looks the token up; by the time it gets that
    # answer, the token has expired: expiry is checked on every request, so it is refused.
    sessions = slow()
    caller = Caller("user-id", "ann", False)
    jobs.auth._valid[digest] = jobs.auth._Entry(caller, None, time.monotonic() - 60)  # due
    lock = jobs.auth._LOOKUP_LOCKS[hash(digest) % len(jobs.auth._LOOKUP_LOCKS)]
    result = []
    with lock:  # the other thread's look-up is in progress
        waiter = threading.Thread(target=lambda: result.append(_outcome(sessions, digest)))
        waiter.start()
        time.sleep(0.1)
        expired = datetime.now(timezone.utc) - timedelta(seconds=1)
        jobs.auth._valid[digest] = jobs.auth._Entry(caller, expired, time.monotonic())
    waiter.join()
    assert isinstance(result[0], Unauthorized) and "expired" in str(result[0])
    assert sessions.calls == 0 and digest not in jobs.auth._valid


def _outcome(session_of, digest):
    try:
        return authenticate_cached(session_of, digest)
    except Unauthorized as exc:
        return exc


def test_an_unknown_token_is_looked_up_by_every_request_and_not_cached(slow):
    digest = hash_token("gt_not-a-token", PEPPER)
    sessions = slow()
    results = together(4, lambda: authenticate_cached(sessions, digest))
    assert all(isinstance(r, Unauthorized) for r in results)
    assert sessions.calls == 4 and digest not in jobs.auth._valid
