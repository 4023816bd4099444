"""Diagnosis flags on real jobs, each built to trigger one flag, and on a healthy one.

Where examples/ has the configuration, the test trains that very file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

from jobs import diagnosis
from jobs.dataset_parsing import parse_builtin, parse_json
from jobs.diagnosis import diagnose
from jobs.gradcheck_store import read_gradchecks


def layer(units: int, activation: str) -> dict:
    return {"units": units, "activation": activation}


def spec(layers: list[dict], loss: str, optimizer: dict, epochs: int, init: str = "auto") -> dict:
    return {"network": {"layers": layers, "init": init}, "loss": loss, "optimizer": optimizer,
            "training": {"epochs": epochs, "batch_size": 32, "seed": 1}}


def moons(scale: float = 1.0):
    if scale == 1.0:
        return parse_builtin("moons", n_samples=400, noise=0.2, seed=0)
    base = parse_builtin("moons", n_samples=400, noise=0.2, seed=0)
    labels = [base.classes[i] for i in base.y]
    return parse_json((np.asarray(base.X) * scale).tolist(), labels)


HEALTHY = spec([layer(16, "tanh"), layer(16, "tanh"), layer(1, "sigmoid")],
               "binary_cross_entropy", {"name": "adam", "learning_rate": 0.01}, 300)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> dict:
    body = json.loads((EXAMPLES / f"{name}.json").read_text())
    body.pop("name")
    return body


DEEP_SIGMOID = example("deep_sigmoid")


def flags(session, job) -> dict:
    diagnosis._cache.pop(job.id, None)
    return {f["code"]: f for f in diagnose(session, job)["flags"]}


@pytest.fixture
def diagnosed(train_job, session):
    def run(job_spec: dict, data=None) -> tuple:
        job = train_job(job_spec, data or moons())
        return job, flags(session, job)
    return run


def test_healthy_moons_raises_no_flag(diagnosed):
    job, found = diagnosed(HEALTHY)
    assert job.status == "succeeded" and job.summary["final_train_accuracy"] > 0.95
    assert found == {}


def test_healthy_relu_network_with_he_init_raises_no_flag(diagnosed):
    job, found = diagnosed(example("deep_relu_he"))
    assert job.status == "succeeded" and found == {}


def test_deep_sigmoid_network_vanishes_and_plateaus(diagnosed):
    _, found = diagnosed(DEEP_SIGMOID)
    assert set(found) == {"vanishing_gradients", "loss_plateau"}
    assert found["vanishing_gradients"]["epoch"] == 1
    assert found["vanishing_gradients"]["layer"] == 1
    assert "‖δ¹‖/‖δᴸ‖" in found["vanishing_gradients"]["message"]
    assert 1 <= found["loss_plateau"]["epoch"] <= 50
    assert found["vanishing_gradients"]["until"] is None  # still holding at the end


def test_deep_linear_network_with_he_init_explodes(diagnosed):
    deep = spec([layer(16, "identity")] * 20 + [layer(1, "sigmoid")], "mse",
                {"name": "sgd", "learning_rate": 0.001}, 30, init="he_normal")
    _, found = diagnosed(deep)
    assert found["exploding_gradients"]["epoch"] == 1
    assert "vanishing_gradients" not in found


def test_relu_with_a_huge_learning_rate_dies(diagnosed):
    dying = spec([layer(32, "relu"), layer(32, "relu"), layer(1, "sigmoid")],
                 "binary_cross_entropy", {"name": "sgd", "learning_rate": 5.0}, 40)
    _, found = diagnosed(dying)
    assert found["dead_relu"]["layer"] in (1, 2)
    assert "relu units output 0" in found["dead_relu"]["message"]


def test_unscaled_inputs_saturate_tanh(diagnosed):
    tanh = spec([layer(16, "tanh"), layer(16, "tanh"), layer(1, "sigmoid")],
                "binary_cross_entropy", {"name": "sgd", "learning_rate": 0.1}, 40)
    _, found = diagnosed(tanh, moons(scale=50.0))
    assert found["saturated_units"]["layer"] == 1
    assert found["saturated_units"]["epoch"] == 1


def test_oscillating_rising_loss_says_learning_rate_too_high(diagnosed):
    job, found = diagnosed(example("lr_too_high"))
    assert job.status == "succeeded"
    # Steps this large also saturate the tanh layer and leave the loss high.
    assert set(found) == {"learning_rate_too_high", "saturated_units", "loss_plateau"}
    assert found["learning_rate_too_high"]["epoch"] <= 10


def test_divergence_is_flagged_at_its_epoch(diagnosed):
    job, found = diagnosed(example("diverging_lr"))
    assert job.status == "failed" and "diverged at epoch 4" in job.error
    assert found["divergence"]["epoch"] == 4
    assert job.error in found["divergence"]["message"]


def test_the_xor_example_learns_with_checked_gradients(diagnosed, session):
    job, found = diagnosed(example("xor_sigmoid_sgd"), parse_builtin("xor"))
    assert job.summary["final_train_accuracy"] == 1.0
    checks = read_gradchecks(session, job)
    assert [c["epoch"] for c in checks] == [500, 1000, 1500, 2000, 2500, 3000]
    assert all(c["max_rel_error"] < 1e-6 for c in checks)
    # The classic XOR saddle: the loss sits near 0.25 before it falls; the flag is closed.
    assert set(found) == {"loss_plateau"}
    assert found["loss_plateau"]["epoch"] == 1 and 50 < found["loss_plateau"]["until"] < 3000


def test_flags_are_ordered_by_epoch(diagnosed, session):
    job, _ = diagnosed(DEEP_SIGMOID)
    epochs = [f["epoch"] for f in diagnose(session, job)["flags"]]
    assert epochs == sorted(epochs)


def test_a_repeated_poll_reads_only_new_epochs(diagnosed, session, engine):
    job, first = diagnosed(DEEP_SIGMOID)
    statements = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, sql, *args: statements.append(sql))
    again = diagnose(session, job)
    # One query finds no epoch after the cached one; no layer row is read again.
    assert len(statements) == 1 and "epoch_metrics" in statements[0]
    assert again["epochs_examined"] == 100
    assert {f["code"]: f for f in again["flags"]} == first


DYING = spec([layer(32, "relu"), layer(32, "relu"), layer(1, "sigmoid")],
             "binary_cross_entropy", {"name": "sgd", "learning_rate": 5.0}, 40)


@pytest.mark.parametrize("name", ["deep_sigmoid", "lr_too_high", "dying"])
def test_reading_in_small_chunks_gives_the_same_flags(diagnosed, session, monkeypatch, name):
    # Chunks of 7 epochs split every run of a condition across chunk boundaries.
    job, full = diagnosed(DYING if name == "dying" else example(name))
    assert full
    monkeypatch.setattr(diagnosis, "READ_CHUNK", 7)
    assert flags(session, job) == full
