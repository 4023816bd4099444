"""jobs/db.make_engine's pool: how many connections it keeps for a busy process."""
from contextlib import ExitStack

from sqlalchemy import event

from jobs.db import make_engine


def connections_opened(engine) -> list:
    opened = []
    event.listen(engine, "connect", lambda *_: opened.append(1))
    return opened


def use_at_once(engine, n: int) -> None:
    with ExitStack() as stack:
        for _ in range(n):
            stack.enter_context(engine.connect()).exec_driver_sql("select 1")


def test_a_pool_of_n_keeps_n_connections_open_between_bursts(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=8)
    opened = connections_opened(engine)
    use_at_once(engine, 8)
    assert len(opened) == 8
    use_at_once(engine, 8)  # with the default pool of 5, three more would be opened here
    assert len(opened) == 8
    engine.dispose()

