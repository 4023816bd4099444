"""Sweeps: search expansion, validation before anything is created, ranking, promotion,
cancellation and ownership, through the API with trials trained in-process."""
from __future__ import annotations

import copy
import math

import pytest

from jobs import sweep_search, sweep_views, sweeps
from jobs.db import session_scope
from jobs.errors import InvalidInput
from jobs.models import Job, Sweep
from tests.factories import XOR_SPEC


def base_spec(**training) -> dict:
    spec = copy.deepcopy(XOR_SPEC)
    spec["training"].update(training)
    return spec


def sweep_body(dataset_id: str, parameters: dict, **overrides) -> dict:
    body = {"name": "lr sweep", "dataset_id": dataset_id, "base": base_spec(epochs=200),
            "search": {"method": "grid", "parameters": parameters},
            "parallel_trials": 2, "metric": "final_train_loss"}
    body.update(overrides)
    return body


def create(client, headers, body):
    return client.post("/v1/sweeps", json=body, headers=headers)


# --- expansion (pure) ---------------------------------------------------------------------

def test_grid_is_the_cartesian_product_in_parameter_order():
    params = sweep_search.parse_parameters(
        {"optimizer.learning_rate": [0.1, 1.0], "network.layers[0].units": [2, 4, 8]}, "grid")
    trials = sweep_search.expand(params, "grid", None, seed=0)
    assert len(trials) == 6
    assert trials[0] == {"optimizer.learning_rate": 0.1, "network.layers[0].units": 2}
    assert trials[-1] == {"optimizer.learning_rate": 1.0, "network.layers[0].units": 8}


def test_random_search_is_reproducible_and_within_bounds():
    raw = {"optimizer.learning_rate": {"distribution": "log_uniform", "min": 1e-4, "max": 1.0},
           "training.batch_size": {"distribution": "choice", "values": [1, 2, 4]},
           "network.layers[0].units": {"distribution": "int_uniform", "min": 2, "max": 9}}
    params = sweep_search.parse_parameters(raw, "random")
    first = sweep_search.expand(params, "random", 50, seed=7)
    assert first == sweep_search.expand(params, "random", 50, seed=7)
    assert first != sweep_search.expand(params, "random", 50, seed=8)
    rates = [t["optimizer.learning_rate"] for t in first]
    assert all(1e-4 <= r <= 1.0 for r in rates)
    # Log-uniform: the draws spread over the decades, not bunched near the top.
    assert min(rates) < 1e-2 < max(rates)
    assert {t["training.batch_size"] for t in first} == {1, 2, 4}
    assert all(isinstance(t["network.layers[0].units"], int) for t in first)


def test_paths_write_one_item_every_item_or_all_but_the_output_layer():
    spec = {"network": {"layers": [{"units": 4, "activation": "tanh"},
                                   {"units": 4, "activation": "tanh"},
                                   {"units": 1, "activation": "sigmoid"}]}}
    for path, expected in [("network.layers[*].activation", ["relu"] * 3),
                           ("network.layers[:-1].activation", ["relu", "relu", "sigmoid"]),
                           ("network.layers[-2].activation", ["tanh", "relu", "sigmoid"])]:
        params = sweep_search.parse_parameters({path: ["relu"]}, "grid")
        out = sweep_search.apply(spec, params, {path: "relu"})
        assert [layer["activation"] for layer in out["network"]["layers"]] == expected
        assert sweep_search.read(out, params[0].steps) == "relu"
    assert spec["network"]["layers"][0]["activation"] == "tanh"  # the base is not mutated


@pytest.mark.parametrize("raw, method, field", [
    ({"optimizer..learning_rate": [1]}, "grid", "search.parameters.optimizer..learning_rate"),
    ({"owner_id": [1]}, "grid", "search.parameters.owner_id"),
    ({"optimizer.learning_rate": []}, "grid", "search.parameters.optimizer.learning_rate"),
    ({"optimizer.learning_rate": {"distribution": "uniform", "min": 0, "max": 1}}, "grid",
     "search.parameters.optimizer.learning_rate"),
    ({"optimizer.learning_rate": {"distribution": "log_uniform", "min": 0, "max": 1}},
     "random", "search.parameters.optimizer.learning_rate.min"),
    ({"optimizer.learning_rate": {"distribution": "uniform", "min": 2, "max": 1}}, "random",
     "search.parameters.optimizer.learning_rate"),
    ({"optimizer.learning_rate": {"distribution": "normal"}}, "random",
     "search.parameters.optimizer.learning_rate"),
])
def test_malformed_parameters_name_their_path(raw, method, field):
    with pytest.raises(InvalidInput) as info:
        sweep_search.parse_parameters(raw, method)
    assert info.value.details[0][0] == field


def test_rank_orders_by_metric_and_puts_unfinished_last():
    def job(trial, value, status="succeeded"):
        return Job(sweep_trial=trial, status=status,
                   summary=None if value is None else {"final_val_loss": value})

    trials = [job(0, 0.5), job(1, None, "running"), job(2, 0.1), job(3, 0.5), job(4, None)]
    ranked = sweep_views.rank(trials, "final_val_loss", "minimize")
    assert [(r, j.sweep_trial) for r, j in ranked] == [(1, 2), (2, 0), (3, 3), (None, 1),
                                                      (None, 4)]
    best = sweep_views.rank(trials, "final_val_loss", "maximize")[0][1]
    assert best.sweep_trial in (0, 3)


# --- the API ------------------------------------------------------------------------------

def test_grid_sweep_creates_queued_and_waiting_trials(client, alice, xor_dataset):
    body = sweep_body(xor_dataset, {"optimizer.learning_rate": [0.05, 0.5, 1.0, 2.0]})
    resp = create(client, alice, body)
    assert resp.status_code == 202, resp.get_json()
    sweep = resp.get_json()
    assert resp.headers["Location"] == f"/v1/sweeps/{sweep['id']}"
    assert [t["status"] for t in sorted(sweep["trials"], key=lambda t: t["trial"])] == \
        ["queued", "queued", "waiting", "waiting"]
    rates = sorted(t["params"]["optimizer.learning_rate"] for t in sweep["trials"])
    assert rates == [0.05, 0.5, 1.0, 2.0]
    # Each trial is an ordinary job with its own spec, listed with the user's jobs.
    jobs = client.get("/v1/jobs?status=waiting", headers=alice).get_json()["items"]
    assert len(jobs) == 2 and all(j["spec"]["training"]["epochs"] == 200 for j in jobs)
    seeds = {j["spec"]["training"]["seed"] for j in jobs}
    assert seeds == {0}  # the base's seed, shared by every trial


def test_trials_share_a_seed_drawn_from_the_search_seed(client, alice, xor_dataset):
    body = sweep_body(xor_dataset, {"optimizer.learning_rate": [0.1, 0.2]})
    del body["base"]["training"]["seed"]
    body["search"]["seed"] = 11
    seeds = [{t["id"] for t in create(client, alice, body).get_json()["trials"]}
             for _ in range(2)]
    specs = [client.get(f"/v1/jobs/{i}", headers=alice).get_json()["spec"]["training"]["seed"]
             for ids in seeds for i in ids]
    assert len(set(specs)) == 1


def test_an_invalid_trial_is_refused_before_anything_is_created(
        client, alice, xor_dataset, session_factory):
    body = sweep_body(xor_dataset, {"optimizer.learning_rate": [0.1, -1.0]})
    resp = create(client, alice, body)
    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert "trial 1" in error["message"]
    assert error["details"][0]["field"] == "trials[1].optimizer.learning_rate"
    with session_scope(session_factory) as session:
        assert session.query(Job).count() == 0 and session.query(Sweep).count() == 0


@pytest.mark.parametrize("mutate, status, field", [
    (lambda b: b["search"]["parameters"].update({"network.layers[5].units": [2]}), 422,
     "search.parameters.network.layers[5].units"),
    (lambda b: b["search"]["parameters"].update({"network.layers[0].units": [2, 10**6]}),
     422, "trials[1].network.layers[0].units"),
    (lambda b: b.update(max_trials=3), 422, "max_trials"),
    (lambda b: b.update(metric="final_val_loss"), 422, "metric"),
    (lambda b: b.update(dataset_id="00000000-0000-0000-0000-000000000000"), 422, "dataset_id"),
    (lambda b: b["base"].update(owner="x"), 422, "base.owner"),
    (lambda b: b["search"].update(method="random"), 422, "max_trials"),
    (lambda b: b.update(parallel_trials=0), 422, "parallel_trials"),
])
def test_bad_sweeps_name_the_field(client, alice, xor_dataset, mutate, status, field):
    body = sweep_body(xor_dataset, {"optimizer.learning_rate": [0.1, 0.2, 0.3, 0.4]})
    mutate(body)
    resp = create(client, alice, body)
    assert resp.status_code == status, resp.get_json()
    fields = [d["field"] for d in resp.get_json()["error"]["details"]]
    assert field in fields, fields


def test_queued_trials_count_against_the_active_job_quota(
        client, alice, xor_dataset, settings):
    many = [0.01 * (i + 1) for i in range(settings.max_active_jobs_per_user + 1)]
    body = sweep_body(xor_dataset, {"optimizer.learning_rate": many},
                      parallel_trials=settings.max_active_jobs_per_user + 1)
    resp = create(client, alice, body)
    assert resp.status_code == 429
    body["parallel_trials"] = 2  # the waiting ones are not active
    assert create(client, alice, body).status_code == 202


def test_finished_trials_are_ranked_by_their_summaries(client, alice, xor_dataset, train):
    body = sweep_body(xor_dataset, {"optimizer.learning_rate": [0.01, 0.5, 2.0]},
                      parallel_trials=3)
    sweep = create(client, alice, body).get_json()
    for trial in sweep["trials"]:
        assert train(trial["id"]) == "succeeded"
    view = client.get(f"/v1/sweeps/{sweep['id']}", headers=alice).get_json()
    assert view["status"] == "finished" and view["counts"] == {"succeeded": 3}
    values = [t["metric_value"] for t in view["trials"]]
    assert values == sorted(values) and all(math.isfinite(v) for v in values)
    assert [t["rank"] for t in view["trials"]] == [1, 2, 3]
    for trial in view["trials"]:
        assert trial["metric_value"] == trial["summary"]["final_train_loss"]
    # The smallest learning rate barely moves the loss in 200 epochs.
    assert view["trials"][-1]["params"]["optimizer.learning_rate"] == 0.01


def test_a_finished_trial_promotes_the_next_waiting_one(
        client, alice, xor_dataset, train, session_factory):
    body = sweep_body(xor_dataset, {"optimizer.learning_rate": [0.1, 0.2, 0.3]},
                      parallel_trials=1)
    sweep = create(client, alice, body).get_json()
    first, second, third = sorted(sweep["trials"], key=lambda t: t["trial"])
    with session_scope(session_factory) as session:
        assert sweeps.promote_waiting(session, first["id"]) == []  # still queued: no slot
    train(first["id"])
    with session_scope(session_factory) as session:
        assert sweeps.promote_waiting(session, first["id"]) == [second["id"]]
    with session_scope(session_factory) as session:
        # A repeat (a duplicate delivery, a second worker) finds no free slot.
        assert sweeps.promote_waiting(session, first["id"]) == []
    statuses = {t["id"]: t["status"] for t in
                client.get(f"/v1/sweeps/{sweep['id']}", headers=alice).get_json()["trials"]}
    assert statuses == {first["id"]: "succeeded", second["id"]: "queued",
                        third["id"]: "waiting"}


def test_promotion_ignores_jobs_outside_sweeps(client, alice, xor_dataset, session_factory):
    body = {"dataset_id": xor_dataset, **base_spec()}
    job = client.post("/v1/jobs", json=body, headers=alice).get_json()
    with session_scope(session_factory) as session:
        assert sweeps.promote_waiting(session, job["id"]) == []
        assert sweeps.promote_waiting(session, "no-such-job") == []


def test_cancel_stops_every_unfinished_trial(client, alice, xor_dataset, train):
    body = sweep_body(xor_dataset, {"optimizer.learning_rate": [0.1, 0.2, 0.3]})
    sweep = create(client, alice, body).get_json()
    train(min(sweep["trials"], key=lambda t: t["trial"])["id"])
    resp = client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=alice)
    assert resp.status_code == 202
    assert resp.get_json()["counts"] == {"succeeded": 1, "cancelled": 2}
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=alice).status_code == 409


def test_cancelling_one_waiting_trial_cancels_it_at_once(client, alice, xor_dataset):
    body = sweep_body(xor_dataset, {"optimizer.learning_rate": [0.1, 0.2, 0.3]},
                      parallel_trials=1)
    sweep = create(client, alice, body).get_json()
    waiting = next(t for t in sweep["trials"] if t["status"] == "waiting")
    resp = client.post(f"/v1/jobs/{waiting['id']}/cancel", headers=alice)
    assert resp.status_code == 202 and resp.get_json()["status"] == "cancelled"


def test_other_users_get_404_for_every_sweep_route(client, alice, auth, xor_dataset):
    sweep = create(client, alice, sweep_body(xor_dataset, {"optimizer.learning_rate": [0.1]}))
    sweep_id = sweep.get_json()["id"]
    bob = auth("bob")
    assert client.get(f"/v1/sweeps/{sweep_id}", headers=bob).status_code == 404
    assert client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=bob).status_code == 404
    assert client.delete(f"/v1/sweeps/{sweep_id}", headers=bob).status_code == 404
    assert client.get("/v1/sweeps", headers=bob).get_json()["items"] == []
    # Bob cannot start a sweep on Alice's dataset either.
    resp = create(client, bob, sweep_body(xor_dataset, {"optimizer.learning_rate": [0.1]}))
    assert resp.status_code == 422
    assert client.get(f"/v1/sweeps/{sweep_id}", headers=alice).status_code == 200


def test_list_and_delete(client, alice, xor_dataset, train):
    sweep = create(client, alice, sweep_body(xor_dataset, {"optimizer.learning_rate": [0.1]}))
    sweep = sweep.get_json()
    listed = client.get("/v1/sweeps", headers=alice).get_json()["items"]
    assert [(s["id"], s["counts"]) for s in listed] == [(sweep["id"], {"queued": 1})]
    assert client.delete(f"/v1/sweeps/{sweep['id']}", headers=alice).status_code == 409
    train(sweep["trials"][0]["id"])
    assert client.delete(f"/v1/sweeps/{sweep['id']}", headers=alice).status_code == 204
    assert client.get(f"/v1/sweeps/{sweep['id']}", headers=alice).status_code == 404
    job = client.get(f"/v1/jobs/{sweep['trials'][0]['id']}", headers=alice)
    assert job.get_json()["status"] == "succeeded"  # the trial stays, as a plain job


def test_a_huge_grid_is_refused_without_being_built():
    params = sweep_search.parse_parameters(
        {f"optimizer.p{i}": list(range(1000)) for i in range(20)}, "grid")
    with pytest.raises(InvalidInput) as info:
        sweep_search.expand(params, "grid", sweeps.MAX_TRIALS, seed=0)
    assert info.value.details[0][0] == "max_trials"


def test_a_base_value_in_the_way_of_a_path_is_an_error_not_overwritten():
    params = sweep_search.parse_parameters({"training.batch_size": [2]}, "grid")
    with pytest.raises(InvalidInput) as info:
        sweep_search.apply({"training": 5}, params, {"training.batch_size": 2})
    assert info.value.details[0][0] == "search.parameters.training.batch_size"


def test_the_reaper_pass_queues_trials_whose_predecessor_ended_without_a_worker(
        client, alice, xor_dataset, session_factory, settings):
    from jobs.reaper import reap

    body = sweep_body(xor_dataset, {"optimizer.learning_rate": [0.1, 0.2, 0.3]},
                      parallel_trials=1)
    sweep = create(client, alice, body).get_json()
    first, second, _ = sorted(sweep["trials"], key=lambda t: t["trial"])
    with session_scope(session_factory) as session:
        assert sweeps.promote_stalled(session) == []  # the slot is taken
        # As the reaper leaves a job whose worker died on every attempt.
        session.get(Job, first["id"]).status = "failed"
    with session_scope(session_factory) as session:
        assert reap(session, settings).to_send == [second["id"]]
    with session_scope(session_factory) as session:
        assert sweeps.promote_stalled(session) == []
        assert session.get(Job, second["id"]).status == "queued"
