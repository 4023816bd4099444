"""POST/GET /v1/jobs, cancellation, and what a trained job exposes."""
import pytest

from tests.factories import xor_job


def submit(client, headers, body, **kw):
    return client.post("/v1/jobs", json=body, headers=headers, **kw)


def test_submit_answers_202_with_location_and_filled_spec(client, alice, xor_dataset):
    resp = submit(client, alice, xor_job(xor_dataset))
    assert resp.status_code == 202
    job = resp.get_json()
    assert resp.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["progress"] == {"epoch": 0, "epochs": 300}
    # Defaults are filled in and stored with the job.
    assert job["spec"]["optimizer"]["momentum"] == 0.0
    assert job["spec"]["record"]["every_epochs"] >= 1


def test_server_picks_and_stores_a_seed(client, alice, xor_dataset):
    body = xor_job(xor_dataset)
    del body["training"]["seed"]
    job = submit(client, alice, body).get_json()
    assert isinstance(job["spec"]["training"]["seed"], int)
    assert job["manifest"]["seed"] == job["spec"]["training"]["seed"]


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b["network"]["layers"][1].update(activation="sigmoidd"),
     "network.layers[1].activation"),
    (lambda b: b["training"].update(batch_size=0), "training.batch_size"),
    (lambda b: b["optimizer"].update(learning_rate=-1), "optimizer.learning_rate"),
    (lambda b: b["network"]["layers"][1].update(units=3), "network.layers[1].units"),
    (lambda b: b.update(dataset_id="0000"), "dataset_id"),
    (lambda b: b.update(owner_id="x"), "owner_id"),
    (lambda b: b.update(status="succeeded"), "status"),
])
def test_invalid_specs_are_422_naming_the_field(client, alice, xor_dataset, mutate, field):
    body = xor_job(xor_dataset)
    mutate(body)
    resp = submit(client, alice, body)
    assert resp.status_code == 422, resp.get_json()
    fields = [d["field"] for d in resp.get_json()["error"]["details"]]
    assert any(f == field or f.endswith(field) for f in fields), fields


def test_nan_and_overflow_are_refused(client, alice, xor_dataset):
    for literal in ("NaN", "Infinity", "1e999"):
        raw = ('{"dataset_id": "%s", "network": {"layers": [{"units": 1, "activation": '
               '"sigmoid"}]}, "optimizer": {"learning_rate": %s}}' % (xor_dataset, literal))
        resp = client.post("/v1/jobs", data=raw, content_type="application/json", headers=alice)
        assert resp.status_code == 400, literal
        assert resp.get_json()["error"]["code"] == "malformed_json"


def test_malformed_json_wrong_type_and_empty_body(client, alice):
    assert client.post("/v1/jobs", data="{", content_type="application/json",
                       headers=alice).status_code == 400
    assert client.post("/v1/jobs", data="a=b", content_type="text/plain",
                       headers=alice).status_code == 415
    assert client.post("/v1/jobs", headers=alice).status_code == 400


def test_oversized_body_is_413(client, alice, settings):
    big = "x" * (settings.max_request_bytes + 1)
    resp = client.post("/v1/jobs", data=big, content_type="application/json", headers=alice)
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "request_entity_too_large"


def test_limits_are_refused_before_queueing(client, alice, xor_dataset, settings):
    body = xor_job(xor_dataset, epochs=settings.max_epochs + 1)
    resp = submit(client, alice, body)
    assert resp.status_code == 422
    assert "max_epochs" in resp.get_json()["error"]["message"]
    assert client.get("/v1/jobs", headers=alice).get_json()["items"] == []


def test_other_users_see_404(client, alice, auth, xor_dataset):
    job = submit(client, alice, xor_job(xor_dataset)).get_json()
    bob = auth("bob")
    for method, url in [("get", f"/v1/jobs/{job['id']}"), ("post", f"/v1/jobs/{job['id']}/cancel"),
                        ("get", f"/v1/jobs/{job['id']}/metrics"),
                        ("get", f"/v1/jobs/{job['id']}/model"),
                        ("get", f"/v1/datasets/{xor_dataset}"),
                        ("delete", f"/v1/datasets/{xor_dataset}")]:
        assert getattr(client, method)(url, headers=bob).status_code == 404, url
    assert client.get("/v1/jobs", headers=bob).get_json()["items"] == []
    # A job on another user's dataset is refused as if the dataset did not exist.
    assert submit(client, bob, xor_job(xor_dataset)).status_code == 422


def test_list_is_newest_first_with_cursor_and_status_filter(client, alice, xor_dataset):
    ids = [submit(client, alice, xor_job(xor_dataset)).get_json()["id"] for _ in range(5)]
    page1 = client.get("/v1/jobs?limit=2", headers=alice).get_json()
    page2 = client.get(f"/v1/jobs?limit=2&cursor={page1['next_cursor']}", headers=alice).get_json()
    page3 = client.get(f"/v1/jobs?limit=2&cursor={page2['next_cursor']}", headers=alice).get_json()
    seen = [j["id"] for p in (page1, page2, page3) for j in p["items"]]
    assert seen == ids[::-1] and page3["next_cursor"] is None
    client.post(f"/v1/jobs/{ids[0]}/cancel", headers=alice)
    cancelled = client.get("/v1/jobs?status=cancelled", headers=alice).get_json()["items"]
    assert [j["id"] for j in cancelled] == [ids[0]]
    assert client.get("/v1/jobs?status=bogus", headers=alice).status_code == 422
    assert client.get("/v1/jobs?cursor=%%%", headers=alice).status_code == 422


def test_cancel_queued_job_then_409(client, alice, xor_dataset, train):
    job = submit(client, alice, xor_job(xor_dataset)).get_json()
    resp = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice)
    assert resp.status_code == 202 and resp.get_json()["status"] == "cancelled"
    assert train(job["id"]) == "not claimable"
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice).status_code == 409


def test_idempotency_key_returns_the_same_job(client, alice, xor_dataset):
    body = xor_job(xor_dataset)
    key = {"Idempotency-Key": "abc-1", **alice}
    first = submit(client, key, body).get_json()
    second = submit(client, key, body).get_json()
    assert first["id"] == second["id"]
    other = submit(client, key, xor_job(xor_dataset, epochs=7))
    assert other.status_code == 422
    assert len(client.get("/v1/jobs", headers=alice).get_json()["items"]) == 1
