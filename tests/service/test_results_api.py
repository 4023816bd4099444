"""A job trained in-process: its metrics, model and predictions over the API."""
import csv
import io

import numpy as np
import pytest

import mlp
from tests.factories import xor_job


@pytest.fixture
def trained(client, alice, xor_dataset, train):
    job = client.post("/v1/jobs", json=xor_job(xor_dataset, epochs=400), headers=alice).get_json()
    assert train(job["id"]) == "succeeded"
    return job["id"]


def test_job_succeeds_with_summary_and_progress(client, alice, trained):
    job = client.get(f"/v1/jobs/{trained}", headers=alice).get_json()
    assert job["status"] == "succeeded"
    assert job["progress"] == {"epoch": 400, "epochs": 400}
    assert job["summary"]["epochs_run"] == 400
    assert job["summary"]["final_train_accuracy"] == 1.0
    assert job["worker"] == "test-worker" and job["attempts"] == 1
    assert job["manifest"]["numpy_version"] == np.__version__


def test_metrics_have_every_epoch_and_layer(client, alice, trained):
    m = client.get(f"/v1/jobs/{trained}/metrics", headers=alice).get_json()
    assert m["epoch"] == list(range(1, 401))
    assert len(m["train_loss"]) == 400 and m["train_loss"][-1] < m["train_loss"][0]
    assert [layer["layer"] for layer in m["layers"]] == [1, 2]
    assert m["layers"][0]["activation"] == "tanh" and m["layers"][0]["units"] == 4
    for layer in m["layers"]:
        assert len(layer["weight_grad_norm"]) == 400
        assert all(v >= 0 for v in layer["delta_norm"])


def test_metrics_since_epoch_and_downsampling_keep_extremes(client, alice, trained):
    tail = client.get(f"/v1/jobs/{trained}/metrics?since_epoch=390", headers=alice).get_json()
    assert tail["epoch"] == list(range(391, 401))
    full = client.get(f"/v1/jobs/{trained}/metrics", headers=alice).get_json()
    small = client.get(f"/v1/jobs/{trained}/metrics?max_points=20", headers=alice).get_json()
    assert len(small["epoch"]) <= 20
    assert max(small["train_loss"]) == max(full["train_loss"])
    assert min(small["train_loss"]) == min(full["train_loss"])
    assert len(small["layers"][0]["delta_norm"]) == len(small["epoch"])


def test_metrics_csv(client, alice, trained):
    resp = client.get(f"/v1/jobs/{trained}/metrics?format=csv", headers=alice)
    assert resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert len(rows) == 400 and "layer2_delta_norm" in rows[0]


def test_model_json_npz_and_predict(client, alice, trained):
    model = client.get(f"/v1/jobs/{trained}/model", headers=alice).get_json()
    assert [np.shape(layer["weights"]) for layer in model["layers"]] == [(2, 4), (4, 1)]
    npz = client.get(f"/v1/jobs/{trained}/model?format=npz", headers=alice).get_data()
    restored = mlp.Model.from_bytes(npz)
    assert np.array_equal(restored.layers[0][0], np.array(model["layers"][0]["weights"]))
    X = [[0, 0], [0, 1], [1, 0], [1, 1]]
    pred = client.post(f"/v1/jobs/{trained}/predict", json={"X": X}, headers=alice).get_json()
    assert pred["predictions"] == ["0", "1", "1", "0"]
    assert np.allclose(np.sum(pred["probabilities"], axis=1), 1.0)
    bad = client.post(f"/v1/jobs/{trained}/predict", json={"X": [[1, 2, 3]]}, headers=alice)
    assert bad.status_code == 422 and bad.get_json()["error"]["details"][0]["field"] == "X[0]"


def test_model_of_unfinished_job_is_409(client, alice, xor_dataset):
    job = client.post("/v1/jobs", json=xor_job(xor_dataset), headers=alice).get_json()
    assert client.get(f"/v1/jobs/{job['id']}/model", headers=alice).status_code == 409


def test_diverging_job_fails_with_epoch_and_layer(client, alice, xor_dataset, train):
    body = xor_job(xor_dataset, epochs=200)
    body["loss"] = "mse"
    body["network"]["layers"] = [{"units": 8, "activation": "relu"},
                                 {"units": 1, "activation": "identity"}]
    body["optimizer"]["learning_rate"] = 1e6
    job = client.post("/v1/jobs", json=body, headers=alice)
    assert job.status_code == 202, job.get_json()
    assert train(job.get_json()["id"]) == "failed"
    failed = client.get(f"/v1/jobs/{job.get_json()['id']}", headers=alice).get_json()
    assert failed["status"] == "failed" and "diverged at epoch" in failed["error"]
