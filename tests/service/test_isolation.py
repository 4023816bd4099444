"""Tenant isolation: every /v1 route that takes an id answers 404 for another user's id.

The routes are enumerated from `app.url_map`, so a route added later is covered without
editing this file, or fails here until its resource kind (first path segment) has a
creator and its body (if it needs one) is listed below. Each id argument is swapped in
turn for the other user's id, the others keeping the caller's own ids; then, as a
control, the caller's own ids must not answer 404 (so the 404 above is the ownership
check, not a bad request). Admin routes are left out: seeing everything is their point
(tests/service/test_admin.py checks that only admins reach them).
"""
from __future__ import annotations

import re
import uuid

import pytest

from tests.factories import XOR_SPEC, xor_job

ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
# Bodies for POST routes that need one, keyed by the rule's last segment.
BODIES = {
    "predict": {"X": [[0.0, 1.0]]},
    "trace": {"X": [[0.0, 1.0]], "y": [1]},
    "gradcheck": {"samples": 2},
}


def _create_dataset(client, headers) -> str:
    resp = client.post("/v1/datasets", json={"name": "xor", "builtin": "xor"}, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def _create_job(client, headers, dataset_id: str) -> str:
    resp = client.post("/v1/jobs", json=xor_job(dataset_id, epochs=5), headers=headers)
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()["id"]


def _create_sweep(client, headers, dataset_id: str) -> str:
    body = {"name": "s", "dataset_id": dataset_id, "base": XOR_SPEC,
            "search": {"method": "grid", "parameters": {"optimizer.learning_rate": [0.1, 0.2]}},
            "metric": "final_train_loss"}
    resp = client.post("/v1/sweeps", json=body, headers=headers)
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()["id"]


def owned_resources(client, headers) -> dict[str, str]:
    """One resource of each kind, keyed by the first path segment after /v1/."""
    dataset = _create_dataset(client, headers)
    return {"datasets": dataset, "jobs": _create_job(client, headers, dataset),
            "sweeps": _create_sweep(client, headers, dataset),
            "other_jobs": _create_job(client, headers, dataset)}


def id_routes(app) -> list[tuple[str, str]]:
    """(method, rule) of every non-admin /v1 route with an argument in its path."""
    return sorted((method, rule.rule) for rule in app.url_map.iter_rules()
                  if rule.rule.startswith("/v1/") and not rule.rule.startswith("/v1/admin/")
                  and rule.arguments
                  for method in rule.methods - {"HEAD", "OPTIONS"})


def fill(rule: str, ids: dict[str, str], swap: str | None, other: dict[str, str]) -> str:
    """The rule with each argument filled by `ids` (or `other` for the swapped one)."""
    kind = rule.split("/")[2]

    def value(match: re.Match) -> str:
        name = match.group(1)
        key = "other_jobs" if name == "other_id" and kind == "jobs" else kind
        source = other if name == swap else ids
        if key not in source:
            pytest.fail(f"{rule}: no creator for argument {name!r} (kind {key!r}): "
                        "extend owned_resources() in tests/service/test_isolation.py")
        return source[key]

    return ARG.sub(value, rule)


def call(client, method: str, path: str, headers):
    body = BODIES.get(path.rstrip("/").rsplit("/", 1)[-1]) if method == "POST" else None
    return client.open(path, method=method, json=body, headers=headers)


@pytest.fixture
def two_tenants(client, auth):
    alice, bob = auth("alice"), auth("bob")
    return (alice, owned_resources(client, alice)), (bob, owned_resources(client, bob))


def test_every_id_route_answers_404_for_another_users_ids(app, client, two_tenants):
    (alice, mine), (bob, theirs) = two_tenants
    routes = id_routes(app)
    assert len(routes) >= 8, routes
    leaks = []
    for method, rule in routes:
        for arg in ARG.findall(rule):
            resp = call(client, method, fill(rule, mine, arg, theirs), alice)
            if resp.status_code != 404 or resp.get_json()["error"]["code"] != "not_found":
                leaks.append(f"{method} {rule} [{arg}] -> {resp.status_code}")
    assert not leaks, "other users' ids must answer 404:\n" + "\n".join(leaks)
    # Nothing of bob's was touched by alice's attempts (cancel, delete...).
    assert client.get(f"/v1/jobs/{theirs['jobs']}", headers=bob).get_json()["status"] == "queued"
    assert client.get(f"/v1/datasets/{theirs['datasets']}", headers=bob).status_code == 200


def test_own_ids_reach_every_route_control(app, client, two_tenants):
    """The control: with the caller's own ids no route answers 404 (deletes go last)."""
    (alice, mine), _ = two_tenants
    routes = sorted(id_routes(app), key=lambda r: r[0] == "DELETE")
    missing = [f"{m} {r} -> {resp.status_code} {resp.get_json()}" for m, r in routes
               if (resp := call(client, m, fill(r, mine, None, {}), alice)).status_code == 404]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("bad_id", ["1", "not-a-uuid", "00000000000000000000000000000000",
                                    "{%s}" % uuid.uuid4(), "x" * 300, "%00", "..%2f..%2fetc"])
def test_ids_that_are_not_uuids_are_404_on_every_route(app, client, alice, bad_id):
    for method, rule in id_routes(app):
        path = ARG.sub(bad_id, rule)
        resp = call(client, method, path, alice)
        assert resp.status_code == 404, f"{method} {path} -> {resp.status_code}"
        assert resp.get_json()["error"]["code"] == "not_found"


def test_ids_are_random_uuid4(client, alice):
    created = owned_resources(client, alice)
    for value in created.values():
        assert uuid.UUID(value).version == 4
