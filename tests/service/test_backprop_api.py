"""The backprop endpoints over the API: gradcheck, trace, gradchecks, rerun, diff, /trace."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.factories import xor_job

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHECKED = {"gradient_check": {"every_epochs": 50, "samples": 4}}


@pytest.fixture
def trained(client, alice, xor_dataset, train):
    body = {**xor_job(xor_dataset, epochs=100), "diagnostics": CHECKED}
    job = client.post("/v1/jobs", json=body, headers=alice).get_json()
    assert train(job["id"]) == "succeeded"
    return job["id"]


def test_gradcheck_answers_errors_and_the_cost_of_each_method(client, alice, trained):
    resp = client.post(f"/v1/jobs/{trained}/gradcheck", json={"samples": 4}, headers=alice)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["epoch"] == 100 and body["weights"] == "model"
    assert [layer["layer"] for layer in body["layers"]] == [1, 2]
    assert body["max_rel_error"] < 1e-6
    assert body["finite_differences"]["forward_passes"] == 2 * body["parameters"] == 34
    assert body["backprop"] == {**body["backprop"], "forward_passes": 1, "backward_passes": 1}


def test_gradcheck_refusals(client, alice, auth, trained, xor_dataset):
    url = f"/v1/jobs/{trained}/gradcheck"
    assert client.post(url, json={"samples": 0}, headers=alice).status_code == 422
    missing = client.post(url, json={"epoch": 3}, headers=alice)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["details"][0]["field"] == "epoch"
    assert client.post(url, json={}, headers=auth("mallory")).status_code == 404
    queued = client.post("/v1/jobs", json=xor_job(xor_dataset), headers=alice).get_json()
    resp = client.post(f"/v1/jobs/{queued['id']}/gradcheck", json={}, headers=alice)
    assert resp.status_code == 409
    wide = xor_job(xor_dataset)
    wide["network"]["layers"] = [{"units": 200, "activation": "tanh"}] * 2 + \
        [{"units": 1, "activation": "sigmoid"}]
    big = client.post("/v1/jobs", json=wide, headers=alice).get_json()
    resp = client.post(f"/v1/jobs/{big['id']}/gradcheck", json={}, headers=alice)
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "limit_exceeded"


def test_stored_gradchecks_by_epoch(client, alice, trained):
    body = client.get(f"/v1/jobs/{trained}/gradchecks", headers=alice).get_json()
    assert [item["epoch"] for item in body["items"]] == [50, 100]
    assert all(item["max_rel_error"] < 1e-6 for item in body["items"])


def test_trace_gives_every_layer(client, alice, trained):
    X = [[0, 0], [0, 1], [1, 0], [1, 1]]
    resp = client.post(f"/v1/jobs/{trained}/trace", json={"X": X, "y": ["0", "1", "1", "0"]},
                       headers=alice)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert [layer["activation"] for layer in body["layers"]] == ["tanh", "sigmoid"]
    first = body["layers"][0]
    assert first["z"]["shape"] == [4, 4] and first["dW"]["shape"] == [2, 4]
    assert set(first) >= {"z", "a", "delta", "dW", "db"}
    assert body["loss"] > 0 and body["input"]["values"] == X


def test_trace_refusals(client, alice, trained):
    url = f"/v1/jobs/{trained}/trace"
    rows = client.post(url, json={"X": [[0, 0]] * 17, "y": ["0"] * 17}, headers=alice)
    assert rows.status_code == 422
    label = client.post(url, json={"X": [[0, 0]], "y": ["7"]}, headers=alice)
    assert label.status_code == 422 and label.get_json()["error"]["details"][0]["field"] == "y[0]"


def test_job_carries_its_diagnosis(client, alice, trained):
    job = client.get(f"/v1/jobs/{trained}", headers=alice).get_json()
    assert job["diagnosis"] == {"flags": [], "epochs_examined": 100}


def test_the_diverging_example_is_flagged_in_the_job(client, alice, train):
    moons = client.post("/v1/datasets", json={"name": "moons", "builtin": "moons",
                                              "n_samples": 400, "noise": 0.2, "seed": 0},
                        headers=alice).get_json()
    body = {**json.loads((EXAMPLES / "diverging_lr.json").read_text()), "dataset_id": moons["id"]}
    job = client.post("/v1/jobs", json=body, headers=alice).get_json()
    assert train(job["id"]) == "failed"
    got = client.get(f"/v1/jobs/{job['id']}", headers=alice).get_json()
    assert got["diagnosis"]["flags"] == [{
        "code": "divergence", "epoch": 4, "until": None, "layer": None,
        "message": f"training stopped: {got['error']}"}]


def metrics_without_seconds(client, alice, job_id):
    m = client.get(f"/v1/jobs/{job_id}/metrics", headers=alice).get_json()
    return {k: v for k, v in m.items() if k not in ("job_id", "seconds")}


def test_rerun_is_bit_identical(client, alice, trained, train):
    resp = client.post(f"/v1/jobs/{trained}/rerun", headers=alice)
    assert resp.status_code == 202, resp.get_json()
    again = resp.get_json()
    assert again["id"] != trained and again["manifest"]["rerun_of"] == trained
    original = client.get(f"/v1/jobs/{trained}", headers=alice).get_json()
    assert again["spec"] == original["spec"] and again["dataset_id"] == original["dataset_id"]
    assert train(again["id"]) == "succeeded"
    assert metrics_without_seconds(client, alice, again["id"]) == \
        metrics_without_seconds(client, alice, trained)
    npz = [client.get(f"/v1/jobs/{i}/model?format=npz", headers=alice).get_data()
           for i in (again["id"], trained)]
    assert npz[0] == npz[1]
    checks = [client.get(f"/v1/jobs/{i}/gradchecks", headers=alice).get_json()["items"]
              for i in (again["id"], trained)]
    assert checks[0] == checks[1] and len(checks[0]) == 2


def test_diff_lists_exactly_the_changed_fields(client, alice, trained, xor_dataset, train):
    original = client.get(f"/v1/jobs/{trained}", headers=alice).get_json()
    changed = {"dataset_id": xor_dataset, "name": "xor",
               **copy.deepcopy({k: original["spec"][k] for k in
                                ("network", "loss", "optimizer", "training", "diagnostics")})}
    changed["optimizer"]["learning_rate"] = 0.1
    changed["network"]["layers"][0]["units"] = 3
    other = client.post("/v1/jobs", json=changed, headers=alice).get_json()
    assert train(other["id"]) == "succeeded"
    resp = client.get(f"/v1/jobs/{trained}/diff/{other['id']}", headers=alice)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["spec"] == [
        {"path": "network.layers[0].units", "a": 4, "b": 3},
        {"path": "optimizer.learning_rate", "a": 0.5, "b": 0.1},
    ]
    assert [d["path"] for d in body["manifest"]] == ["spec_sha256"]
    curves = body["curves"]
    assert curves["epoch"] == list(range(1, 101))
    assert len(curves["a"]["train_loss"]) == len(curves["b"]["train_loss"]) == 100
    assert curves["a"]["train_loss"] != curves["b"]["train_loss"]
    same = client.get(f"/v1/jobs/{trained}/diff/{trained}", headers=alice).get_json()
    assert same["spec"] == [] and same["curves"]["a"] == same["curves"]["b"]


def test_diff_aligns_curves_of_different_lengths(client, alice, trained, xor_dataset, train):
    short = client.post("/v1/jobs", json={**xor_job(xor_dataset, epochs=40)},
                        headers=alice).get_json()
    assert train(short["id"]) == "succeeded"
    body = client.get(f"/v1/jobs/{trained}/diff/{short['id']}", headers=alice).get_json()
    assert body["curves"]["epoch"] == list(range(1, 101))
    assert body["curves"]["b"]["train_loss"][40:] == [None] * 60
    assert None not in body["curves"]["b"]["train_loss"][:40]


def test_rerun_and_diff_of_someone_elses_job_are_404(client, alice, auth, trained):
    mallory = auth("mallory")
    assert client.post(f"/v1/jobs/{trained}/rerun", headers=mallory).status_code == 404
    assert client.get(f"/v1/jobs/{trained}/diff/{trained}", headers=mallory).status_code == 404
    assert client.get(f"/v1/jobs/{trained}/gradchecks", headers=mallory).status_code == 404
    bad = client.get(f"/v1/jobs/{trained}/diff/not-a-uuid", headers=alice)
    assert bad.status_code == 404


def test_trace_page_and_its_files_are_served(client):
    page = client.get("/trace?job=x")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<script" in html and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<script>" not in html  # no inline script: every script has a src
    for name in ("trace.js", "trace.css"):
        assert client.get(f"/trace/static/{name}").status_code == 200


def test_after_the_dataset_is_deleted(client, alice, trained, xor_dataset):
    assert client.delete(f"/v1/datasets/{xor_dataset}", headers=alice).status_code == 204
    rerun = client.post(f"/v1/jobs/{trained}/rerun", headers=alice)
    assert rerun.status_code == 409
    assert rerun.get_json()["error"]["details"][0]["field"] == "dataset_id"
    assert client.post(f"/v1/jobs/{trained}/gradcheck", json={}, headers=alice).status_code == 409
    # The final model needs no data: the trace still works.
    trace = client.post(f"/v1/jobs/{trained}/trace", json={"X": [[0, 1]], "y": ["1"]},
                        headers=alice)
    assert trace.status_code == 200
