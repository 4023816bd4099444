"""Gradient checks (during training and on request) and traces on a job's stored weights."""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

import mlp
from jobs.dataset_parsing import parse_builtin, parse_json
from jobs.errors import InvalidInput, NotFound
from jobs.gradcheck_store import read_gradchecks
from jobs.introspection import gradcheck_job, trace_job
from jobs.models import Artifact
from jobs.training import run_job

ROOT = Path(__file__).resolve().parents[2]
# The hand-worked 2-2-1 sigmoid network of docs/backprop.md (x = (1, 0), y = 1, mse).
W1, B1 = [[0.5, -0.3], [0.2, 0.8]], [0.1, -0.1]
W2, B2 = [[1.0], [-1.5]], [0.2]
DOC_SYMBOLS = {"z¹": ("z", 1), "a¹": ("a", 1), "z²": ("z", 2), "a²": ("a", 2),
               "δ²": ("delta", 2), "∂L/∂W²": ("dW", 2), "∂L/∂b²": ("db", 2),
               "δ¹": ("delta", 1), "∂L/∂W¹": ("dW", 1), "∂L/∂b¹": ("db", 1)}


def worked_numbers() -> dict:
    """The final value of each equation of the doc's worked example, parsed from its text."""
    text = (ROOT / "docs" / "backprop.md").read_text(encoding="utf-8")
    section = text.split("## Worked example", 1)[1].split("**Update.**", 1)[0]
    statements: dict[str, str] = {}
    current = None
    for line in section.splitlines():
        stripped = line.strip()
        head = re.match(r"^(\S+)\s+=", stripped)
        if line.startswith("    ") and head:
            current = head.group(1)
            statements[current] = stripped
        elif current and line.startswith("    ") and stripped[:1] in ("=", "["):
            statements[current] += " " + stripped
        else:
            current = None
    wanted = [*DOC_SYMBOLS, "L"]
    return {k: json.loads(statements[k].rsplit("=", 1)[1].replace("−", "-")) for k in wanted}


XOR_221 = {"network": {"layers": [{"units": 2, "activation": "sigmoid"},
                                  {"units": 1, "activation": "sigmoid"}]},
           "loss": "mse", "optimizer": {"name": "sgd", "learning_rate": 0.5},
           "training": {"epochs": 20, "batch_size": 4, "seed": 0}}


def checked(layers: list, loss: str, outputs: int = 1) -> dict:
    return {"network": {"layers": [{"units": 3, "activation": a} for a in layers]
                        + [{"units": outputs, "activation": _output(loss)}]},
            "loss": loss, "optimizer": {"name": "sgd", "learning_rate": 0.05},
            "training": {"epochs": 20, "batch_size": 16, "seed": 3},
            "diagnostics": {"gradient_check": {"every_epochs": 10, "samples": 8}}}


def _output(loss: str) -> str:
    return {"binary_cross_entropy": "sigmoid", "cross_entropy": "softmax"}.get(loss, "identity")


def regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2))
    return parse_json(X.tolist(), (X[:, 0] * X[:, 1]).tolist(), task="regression")


CASES = [  # every activation, every loss
    (["identity", "sigmoid"], "mse", regression),
    (["tanh", "relu"], "mae", regression),
    (["leaky_relu", "elu"], "huber", regression),
    (["softplus", "gelu"], "binary_cross_entropy", lambda: parse_builtin("moons", 64)),
    (["tanh"], "cross_entropy", lambda: parse_builtin("moons", 64)),
]


@pytest.mark.parametrize("hidden,loss,data", CASES, ids=[c[1] for c in CASES])
def test_stored_gradient_checks_agree_below_1e_6(train_job, session, hidden, loss, data):
    outputs = 2 if loss == "cross_entropy" else 1
    job = train_job(checked(hidden, loss, outputs), data())
    assert job.status == "succeeded", job.error
    checks = read_gradchecks(session, job)
    assert [c["epoch"] for c in checks] == [10, 20]
    for check in checks:
        assert [layer["layer"] for layer in check["layers"]] == list(range(1, len(hidden) + 2))
        assert 0 <= check["max_rel_error"] < 1e-6
        # A check that compared nothing would report exact zeros everywhere.
        assert check["max_rel_error"] > 0


class StopAfter(threading.Event):
    """A worker shutdown that arrives before batch `batches` + 1 (the trainer asks
    before every batch), so the interruption falls mid-epoch, deterministically."""

    def __init__(self, batches: int):
        super().__init__()
        self.left = batches

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_a_resumed_job_stores_the_same_checks_as_an_uninterrupted_one(
        train_job, session, session_factory, settings):
    spec = {**checked(["tanh"], "binary_cross_entropy"),
            "training": {"epochs": 400, "batch_size": 8, "seed": 3}}
    spec["diagnostics"]["gradient_check"]["every_epochs"] = 25
    whole = train_job(spec, parse_builtin("moons", 200))
    interrupted = train_job(spec, parse_builtin("moons", 200), shutdown=StopAfter(3210))
    assert interrupted.status == "queued" and 0 < interrupted.epoch < 400
    assert run_job(session_factory, settings, interrupted.id, worker_id="w2") == "succeeded"
    resumed = read_gradchecks(session, interrupted)
    assert [c["epoch"] for c in resumed] == list(range(25, 401, 25))
    assert resumed == read_gradchecks(session, whole)


def test_no_gradient_check_without_the_option(train_job, session):
    job = train_job(XOR_221, parse_builtin("xor"))
    assert read_gradchecks(session, job) == []


def test_gradcheck_on_request_reports_errors_and_costs(train_job, session, settings):
    job = train_job(XOR_221, parse_builtin("xor"))
    result = gradcheck_job(session, settings, job, epoch=None, samples=4)
    assert result["epoch"] == 20 and result["weights"] == "model"
    assert result["max_rel_error"] < 1e-6 and len(result["layers"]) == 2
    assert result["parameters"] == 9 and result["samples"] == 4
    assert result["backprop"]["forward_passes"] == 1 and result["backprop"]["backward_passes"] == 1
    assert result["finite_differences"]["forward_passes"] == 18


def test_an_epoch_without_stored_weights_names_the_kept_ones(train_job, session, settings):
    job = train_job(XOR_221, parse_builtin("xor"))
    with pytest.raises(NotFound) as err:
        gradcheck_job(session, settings, job, epoch=7, samples=4)
    assert "20 (model)" in err.value.details[0][1]
    assert gradcheck_job(session, settings, job, epoch=20, samples=4)["epoch"] == 20


def test_trace_of_the_worked_example_matches_the_hand_worked_numbers(train_job, session,
                                                                        settings):
    job = train_job(XOR_221, parse_builtin("xor"))
    hand = mlp.Model([(np.array(W1), np.array(B1)), (np.array(W2), np.array(B2))],
                     ["sigmoid", "sigmoid"], [0.0, 0.0], {"name": "mse"}, n_classes=2)
    session.execute(update(Artifact).where(Artifact.job_id == job.id, Artifact.kind == "model")
                    .values(data=hand.to_bytes()))
    t = trace_job(session, settings, job, X=[[1.0, 0.0]], y=["1"], epoch=None)
    doc = worked_numbers()
    for symbol, (key, layer) in DOC_SYMBOLS.items():
        got = np.ravel(t["layers"][layer - 1][key]["values"])
        assert np.allclose(got, np.ravel(doc[symbol]), atol=1e-12, rtol=0), symbol
    assert t["loss"] == pytest.approx(doc["L"], abs=1e-12)
    assert t["loss_function"] == {"name": "mse"} and t["classes"] == ["0", "1"]
    assert t["parameters"][0]["W"]["values"] == W1


def test_trace_at_a_stopped_jobs_checkpoint(train_job, session, settings):
    slow = {**XOR_221, "training": {**XOR_221["training"], "epochs": 100_000,
                                    "max_runtime_s": 0.3}}
    job = train_job(slow, parse_builtin("xor"))
    assert job.status == "failed" and "runtime limit" in job.error
    t = trace_job(session, settings, job, X=[[0, 1], [1, 1]], y=[1, 0], epoch=None)
    assert t["weights"] == "checkpoint" and t["epoch"] > 0
    assert [layer["a"]["shape"] for layer in t["layers"]] == [[2, 2], [2, 1]]


def test_trace_refuses_bad_rows_and_labels(train_job, session, settings):
    job = train_job(XOR_221, parse_builtin("xor"))
    with pytest.raises(InvalidInput) as err:
        trace_job(session, settings, job, X=[[1.0, 0.0, 2.0]], y=["1"], epoch=None)
    assert err.value.details[0][0] == "X[0]"
    with pytest.raises(InvalidInput) as err:
        trace_job(session, settings, job, X=[[1.0, 0.0]], y=["cat"], epoch=None)
    assert err.value.details[0][0] == "y[0]"
    with pytest.raises(InvalidInput):
        trace_job(session, settings, job, X=[[1.0, 0.0]], y=["1", "0"], epoch=None)
