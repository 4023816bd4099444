"""Issue 9 through HTTP and real worker processes, on both stacks: the gradient check
stored during training, gradcheck and trace on request, diagnosis, rerun and diff."""
from __future__ import annotations

import pytest

from tests.factories import xor_job
from tests.integration import test_end_to_end as end_to_end
from tests.integration.services import wait_for_status

pytestmark = pytest.mark.integration
# The same module-scoped fixtures: a worker, an API client, the XOR dataset.
client, dataset_id = end_to_end.client, end_to_end.dataset_id


@pytest.fixture(scope="module")
def trained(client, dataset_id):
    body = {**xor_job(dataset_id, epochs=300),
            "diagnostics": {"gradient_check": {"every_epochs": 100, "samples": 4}}}
    job = client.post("/v1/jobs", json=body).json()
    done = wait_for_status(client, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    return done


def test_worker_stores_gradient_checks_below_1e_6(client, trained):
    items = client.get(f"/v1/jobs/{trained['id']}/gradchecks").json()["items"]
    assert [item["epoch"] for item in items] == [100, 200, 300]
    assert all(0 < item["max_rel_error"] < 1e-6 for item in items)


def test_gradcheck_and_trace_on_request(client, trained):
    check = client.post(f"/v1/jobs/{trained['id']}/gradcheck", json={"samples": 4}).json()
    assert check["max_rel_error"] < 1e-6 and check["epoch"] == 300
    trace = client.post(f"/v1/jobs/{trained['id']}/trace",
                        json={"X": [[0, 1]], "y": ["1"]}).json()
    assert trace["layers"][1]["a"]["values"][0][0] > 0.5  # the trained net says "1"
    assert trace["layers"][0]["delta"]["shape"] == [1, 4]


def test_healthy_job_has_no_flag_and_a_complete_manifest(client, trained):
    assert trained["diagnosis"]["flags"] == []
    manifest = trained["manifest"]
    for key in ("seed", "dataset_sha256", "spec_sha256", "gradtrace_version", "numpy_version",
                "blas", "blas_threads"):
        assert manifest[key] is not None, key
    assert manifest["seed"] == trained["spec"]["training"]["seed"]


def test_rerun_on_a_worker_is_bit_identical(client, trained):
    resp = client.post(f"/v1/jobs/{trained['id']}/rerun")
    assert resp.status_code == 202, resp.text
    again = wait_for_status(client, resp.json()["id"], {"succeeded", "failed"})
    assert again["status"] == "succeeded", again["error"]

    def metrics(job_id: str) -> dict:
        m = client.get(f"/v1/jobs/{job_id}/metrics").json()
        return {k: v for k, v in m.items() if k not in ("job_id", "seconds")}

    assert metrics(again["id"]) == metrics(trained["id"])
    assert client.get(f"/v1/jobs/{again['id']}/model?format=npz").content == \
        client.get(f"/v1/jobs/{trained['id']}/model?format=npz").content
    diff = client.get(f"/v1/jobs/{trained['id']}/diff/{again['id']}").json()
    assert diff["spec"] == []
    assert diff["curves"]["a"] == diff["curves"]["b"]
