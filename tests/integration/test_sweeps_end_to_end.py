"""A small grid sweep on two real worker processes, on both stacks: every trial succeeds,
both workers take trials, no more than `parallel_trials` ever run at once, and the ranking
follows the trials' summaries."""
from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.factories import XOR_SPEC

pytestmark = pytest.mark.integration

RATES = [0.05, 0.3, 1.0, 3.0]
PARALLEL = 2


@pytest.fixture(scope="module")
def client(stack):
    stack.start_worker("sweep-w1")
    stack.start_worker("sweep-w2")
    with stack.server.client(stack.token()) as http:
        yield http


def test_a_grid_runs_across_two_workers_within_its_parallelism(client):
    dataset = client.post("/v1/datasets", json={"name": "xor", "builtin": "xor"}).json()["id"]
    base = {**XOR_SPEC, "training": {**XOR_SPEC["training"], "epochs": 1500}}
    body = {"name": "xor lr", "dataset_id": dataset, "base": base,
            "search": {"method": "grid", "parameters": {"optimizer.learning_rate": RATES}},
            "parallel_trials": PARALLEL, "metric": "final_train_loss"}
    resp = client.post("/v1/sweeps", json=body)
    assert resp.status_code == 202, resp.text
    sweep_id = resp.json()["id"]

    sweep, most_active = watch(client, sweep_id, timeout=180)
    assert sweep["counts"] == {"succeeded": len(RATES)}, sweep["counts"]
    assert most_active <= PARALLEL
    trials = sweep["trials"]
    assert len({t["worker"] for t in trials}) == 2, [t["worker"] for t in trials]
    assert max_overlap(trials) <= PARALLEL
    values = [t["summary"]["final_train_loss"] for t in trials]
    assert values == sorted(values)
    assert [t["rank"] for t in trials] == [1, 2, 3, 4]
    assert [t["metric_value"] for t in trials] == values
    assert sorted(t["params"]["optimizer.learning_rate"] for t in trials) == RATES


def watch(client, sweep_id: str, timeout: float) -> tuple[dict, int]:
    """Poll the sweep until it finishes; also return the most trials seen active at once."""
    deadline, most = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
        active = sum(sweep["counts"].get(s, 0) for s in ("queued", "running", "cancelling"))
        most = max(most, active)
        if sweep["status"] == "finished":
            return sweep, most
        time.sleep(0.1)
    raise TimeoutError(f"sweep {sweep_id} still running: {sweep['counts']}")


def max_overlap(trials: list[dict]) -> int:
    """The most trials whose [started_at, finished_at] intervals (database clock) overlap."""
    events = []
    for trial in trials:
        events.append((datetime.fromisoformat(trial["started_at"]), 1))
        events.append((datetime.fromisoformat(trial["finished_at"]), -1))
    running = most = 0
    for _, step in sorted(events):  # at a tie the end (-1) sorts first
        running += step
        most = max(most, running)
    return most
