"""A hand-written table of hostile inputs, each with the status it must get, plus the
misconfiguration guards: security headers, closed CORS, no stack traces, the dev pepper,
body limits without Content-Length, and no unsafe deserialisation anywhere in the code.
"""
from __future__ import annotations

import io
import pickle  # noqa: S403 - only to build the hostile payloads this test feeds the API
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from jobs.settings import Settings
from service.hardening import InsecureConfiguration, check_deployment_settings
from tests.factories import xor_job

ROOT = Path(__file__).resolve().parents[2]
NESTED = "[" * 100_000 + "]" * 100_000


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def pickled_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, X=np.array([[1, 2], [3, 4]], dtype=object), y=np.array([0, 1]))
    return buf.getvalue()


def pickled_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    return buf.getvalue()


def zip_bomb() -> bytes:
    """A .npz whose X holds 25M float64 zeros (200 MB, over max_dataset_cells) in ~200 KB."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (25_000, 1_000)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("X.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            for _ in range(200):
                f.write(bytes(1_000_000))
        zf.writestr("y.npy", npz_member(np.zeros(25_000)))
    return buf.getvalue()


def npz_member(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def upload(client, headers, name: str, data: bytes, **form):
    fields = {"name": "up", "file": (io.BytesIO(data), name), **form}
    return client.post("/v1/datasets", data=fields, headers=headers,
                       content_type="multipart/form-data")


def post_dataset(client, headers, body):
    return client.post("/v1/datasets", json=body, headers=headers)


# (label, request function(client, headers, dataset_id), expected status)
HOSTILE = [
    ("ragged X", lambda c, h, d: post_dataset(c, h, {"name": "r", "X": [[1, 2], [3]],
                                                     "y": [0, 1]}), 422),
    ("y shorter than X", lambda c, h, d: post_dataset(c, h, {"name": "r", "X": [[1], [2]],
                                                             "y": [0]}), 422),
    ("strings where numbers go", lambda c, h, d: post_dataset(
        c, h, {"name": "s", "X": [["a", "b"], ["c", "d"]], "y": [0, 1]}), 422),
    ("booleans where numbers go", lambda c, h, d: post_dataset(
        c, h, {"name": "s", "X": [[True, False], [False, True]], "y": [0, 1]}), 422),
    # Finite, so it is data; a job on it diverges and reports nulls (test_divergence_api).
    ("huge finite number 1e308 in X", lambda c, h, d: post_dataset(
        c, h, {"name": "big", "X": [[1e308], [-1e308]], "y": [0, 1]}), 201),
    ("overflowing literal 1e999", lambda c, h, d: c.post(
        "/v1/datasets", data='{"name": "n", "X": [[1e999]], "y": [0]}', headers=h,
        content_type="application/json"), 400),
    ("NaN literal", lambda c, h, d: c.post(
        "/v1/datasets", data='{"name": "n", "X": [[NaN], [1]], "y": [0, 1]}', headers=h,
        content_type="application/json"), 400),
    ("-Infinity literal", lambda c, h, d: c.post(
        "/v1/jobs/%s/predict" % d, data='{"X": [[-Infinity, 0]]}', headers=h,
        content_type="application/json"), 400),
    ("deeply nested JSON", lambda c, h, d: c.post(
        "/v1/jobs", data=NESTED, headers=h, content_type="application/json"), 400),
    ("string where a number goes in a spec", lambda c, h, d: c.post(
        "/v1/jobs", json=xor_job(d, epochs="300"), headers=h), 422),
    ("zero epochs", lambda c, h, d: c.post("/v1/jobs", json=xor_job(d, epochs=0),
                                           headers=h), 422),
    ("negative batch size", lambda c, h, d: c.post(
        "/v1/jobs", json=xor_job(d, batch_size=-4), headers=h), 422),
    ("zero units", lambda c, h, d: c.post("/v1/jobs", json={
        **xor_job(d), "network": {"layers": [{"units": 0, "activation": "tanh"},
                                             {"units": 1, "activation": "sigmoid"}]}},
        headers=h), 422),
    ("negative n_samples", lambda c, h, d: post_dataset(
        c, h, {"name": "b", "builtin": "xor", "n_samples": -5}), 422),
    ("huge n_samples", lambda c, h, d: post_dataset(
        c, h, {"name": "b", "builtin": "xor", "n_samples": 10**12}), 422),
    ("integer overflow in a query", lambda c, h, d: c.get(
        "/v1/datasets?limit=99999999999999999999999", headers=h), 422),
    ("zero limit", lambda c, h, d: c.get("/v1/jobs?limit=0", headers=h), 422),
    # Integers in a query string are decimal digits: pydantic alone read these as 10 and 0.
    ("float-like integer in a query", lambda c, h, d: c.get(
        "/v1/datasets?limit=1_0", headers=h), 422),
    ("signed float in a query", lambda c, h, d: c.get(
        "/v1/jobs?limit=%2B5.0", headers=h), 422),
    ("negative offset", lambda c, h, d: c.get("/v1/datasets?offset=-1", headers=h), 422),
    ("server-owned field owner_id", lambda c, h, d: c.post(
        "/v1/jobs", json={**xor_job(d), "owner_id": "00000000-0000-4000-8000-000000000000"},
        headers=h), 422),
    ("server-owned fields status/attempts/lease", lambda c, h, d: c.post(
        "/v1/jobs", json={**xor_job(d), "status": "succeeded", "attempts": 0,
                          "lease_owner": "me"}, headers=h), 422),
    ("unknown nested spec key", lambda c, h, d: c.post("/v1/jobs", json={
        **xor_job(d), "training": {**xor_job(d)["training"], "gpu": True}}, headers=h), 422),
    ("invalid UTF-8 body", lambda c, h, d: c.post(
        "/v1/jobs", data=b'{"name": "\xff\xfe"}', headers=h,
        content_type="application/json"), 400),
    ("NUL byte in a name", lambda c, h, d: post_dataset(
        c, h, {"name": "a\x00b", "builtin": "xor"}), 422),
    ("path-like dataset name", lambda c, h, d: post_dataset(
        c, h, {"name": "../../etc/passwd", "builtin": "xor"}), 201),
    ("path-like upload file name", lambda c, h, d: upload(
        c, h, "../../../etc/passwd.npz", npz_bytes(X=np.ones((4, 2)), y=np.arange(4) % 2)),
        201),
    ("text/plain body", lambda c, h, d: c.post(
        "/v1/jobs", data="dataset_id=1", headers=h, content_type="text/plain"), 415),
    ("form body on a JSON route", lambda c, h, d: c.post(
        "/v1/jobs", data={"dataset_id": "1"}, headers=h), 415),
    ("no content type", lambda c, h, d: c.post("/v1/jobs", data=b"{}", headers=h), 415),
    ("JSON array instead of object", lambda c, h, d: c.post(
        "/v1/jobs", json=[1, 2], headers=h), 422),
    ("pickled .npz (object array)", lambda c, h, d: upload(c, h, "x.npz", pickled_npz()), 422),
    ("pickled .npy", lambda c, h, d: upload(c, h, "x.npy", pickled_npy(), target="y"), 422),
    ("pickle stream named .npz", lambda c, h, d: upload(
        c, h, "x.npz", pickle.dumps({"X": [[1]]})), 422),
    ("zip bomb .npz", lambda c, h, d: upload(c, h, "bomb.npz", zip_bomb()), 413),
    ("CSV with a million columns", lambda c, h, d: upload(
        c, h, "wide.csv", (",".join(f"c{i}" for i in range(1_000_000)) + ",y\n").encode()
        + (",".join("1" for _ in range(1_000_000)) + ",0\n").encode() * 21, target="y"), 413),
    ("invalid UTF-8 CSV", lambda c, h, d: upload(
        c, h, "bad.csv", b"a,y\n\xff\xfe,1\n2,0\n", target="y"), 422),
    ("too many form parts", lambda c, h, d: c.post(
        "/v1/datasets", data={f"f{i}": "x" for i in range(100)}, headers=h,
        content_type="multipart/form-data"), 413),
]


@pytest.mark.parametrize("label, make, status", HOSTILE, ids=[row[0] for row in HOSTILE])
def test_hostile_input_gets_its_status(client, alice, xor_dataset, label, make, status):
    resp = make(client, alice, xor_dataset)
    assert resp.status_code == status, (label, resp.get_data()[:500])
    body = resp.get_json()
    assert body is not None, "every answer is JSON"
    if status >= 400:
        assert set(body["error"]) == {"code", "message", "details"}


def test_unknown_fields_are_named(client, alice, xor_dataset):
    resp = client.post("/v1/jobs", json={**xor_job(xor_dataset), "owner": "x", "lease": 1},
                       headers=alice)
    assert resp.status_code == 422
    fields = {d["field"] for d in resp.get_json()["error"]["details"]}
    assert {"owner", "lease"} <= fields


# --- every limit: refused before anything is queued, naming the setting and its value ----

@pytest.fixture
def limited(tmp_path):
    """An app whose limits are small enough to cross with tiny requests."""
    from jobs.db import make_engine, make_sessionmaker
    from jobs.models import Base
    from service import create_app
    from tests.factories import bearer, make_token

    settings = Settings.from_env(
        state_dir=tmp_path / "state", database_url=f"sqlite:///{tmp_path / 'lim.db'}",
        broker_url="memory://", storage_dir=tmp_path / "storage", max_request_bytes=200_000,
        max_dataset_cells=1000, max_layers=3, max_units=16, max_parameters=100,
        max_epochs=50, max_batch_size=8, max_cost=5000.0, max_active_jobs_per_user=2,
        max_storage_bytes_per_user=5000, max_form_parts=5)
    settings.ensure_dirs()
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    app = create_app(settings)
    headers = bearer(make_token(make_sessionmaker(engine), settings.token_pepper, "lim"))
    client = app.test_client()
    dataset = client.post("/v1/datasets", json={"name": "x", "builtin": "xor", "n_samples": 8},
                          headers=headers).get_json()["id"]
    return client, headers, dataset


def spec_job(dataset_id: str, units=(4, 1), **training) -> dict:
    body = xor_job(dataset_id, **{"epochs": 10, "batch_size": 4, **training})
    body["network"]["layers"] = [{"units": u, "activation": "tanh"} for u in units[:-1]] + [
        {"units": units[-1], "activation": "sigmoid"}]
    return body


LIMITS = [
    ("max_layers", lambda d: spec_job(d, units=(2, 2, 2, 1)), 422, "3"),
    ("max_units", lambda d: spec_job(d, units=(17, 1)), 422, "16"),
    ("max_parameters", lambda d: spec_job(d, units=(16, 16, 1)), 422, "100"),
    ("max_epochs", lambda d: spec_job(d, epochs=51), 422, "50"),
    ("max_batch_size", lambda d: spec_job(d, batch_size=9), 422, "8"),
    # (2+1) x 13 + (13+1) = 53 parameters x 4 XOR samples x 50 epochs = 10600
    ("max_cost", lambda d: spec_job(d, units=(13, 1), epochs=50), 422, "5000"),
]


@pytest.mark.parametrize("limit, body, status, value", LIMITS, ids=[r[0] for r in LIMITS])
def test_job_limits_name_the_setting_and_value(limited, limit, body, status, value):
    client, headers, dataset = limited
    resp = client.post("/v1/jobs", json=body(dataset), headers=headers)
    assert resp.status_code == status, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "limit_exceeded"
    assert limit in error["message"] and value in error["message"]
    assert client.get("/v1/jobs", headers=headers).get_json()["items"] == []


def test_active_jobs_quota_is_429(limited):
    client, headers, dataset = limited
    for _ in range(2):
        assert client.post("/v1/jobs", json=spec_job(dataset), headers=headers).status_code == 202
    resp = client.post("/v1/jobs", json=spec_job(dataset), headers=headers)
    assert resp.status_code == 429
    assert "max_active_jobs_per_user" in resp.get_json()["error"]["message"]
    assert len(client.get("/v1/jobs", headers=headers).get_json()["items"]) == 2


def test_dataset_cells_and_storage_limits(limited):
    client, headers, _ = limited
    wide = {"name": "w", "X": [[0.0] * 600, [1.0] * 600], "y": [0, 1]}
    resp = client.post("/v1/datasets", json=wide, headers=headers)
    assert resp.status_code == 413
    assert "max_dataset_cells" in resp.get_json()["error"]["message"]
    codes = [client.post("/v1/datasets", json={"name": f"s{i}", "builtin": "xor",
                                               "n_samples": 40, "seed": i},
                         headers=headers).status_code for i in range(8)]
    assert 429 in codes and codes.index(429) > 0
    resp = client.post("/v1/datasets", json={"name": "z", "builtin": "xor", "n_samples": 40,
                                              "seed": 99}, headers=headers)
    assert "max_storage_bytes_per_user" in resp.get_json()["error"]["message"]
    assert "5000" in resp.get_json()["error"]["message"]


def test_body_limit_names_the_setting(limited):
    client, headers, _ = limited
    resp = client.post("/v1/jobs", data="x" * 200_001, headers=headers,
                       content_type="application/json")
    assert resp.status_code == 413
    assert "max_request_bytes" in resp.get_json()["error"]["message"]


def test_chunked_body_without_content_length_is_cut_at_the_limit(limited):
    """Werkzeug enforces MAX_CONTENT_LENGTH on a streamed body too (no Content-Length)."""
    client, headers, _ = limited
    resp = client.post("/v1/jobs", input_stream=io.BytesIO(b"[" + b"1," * 200_000 + b"1]"),
                       headers={**headers, "Transfer-Encoding": "chunked",
                                "Content-Type": "application/json"},
                       # What a server sets for a chunked body (gunicorn does).
                       environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 413


def test_too_many_form_parts_is_413(limited):
    client, headers, _ = limited
    resp = client.post("/v1/datasets", data={f"f{i}": "x" for i in range(6)}, headers=headers,
                       content_type="multipart/form-data")
    assert resp.status_code == 413
    assert "max_form_parts" in resp.get_json()["error"]["message"]


def _keywords(node):
    """Every key of every object in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keywords(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keywords(value)


def test_documented_query_and_header_integers_carry_their_bounds(app):
    """What the API refuses as out of range, its OpenAPI document says is out of range:
    bounds as JSON Schema's minimum/maximum, never pydantic's own "ge"/"le" (which an
    optional query or header integer once leaked, so clients and fuzzers saw no bound)."""
    doc = app.test_client().get("/openapi.json").get_json()
    assert not {"ge", "le", "gt", "lt"} & set(_keywords(doc))
    parameters = {(path, p["name"]): p["schema"] for path, ops in doc["paths"].items()
                  for op in ops.values() for p in op.get("parameters", ())}
    for path, name, low, high in (("/v1/jobs/{id}/metrics", "max_points", 2, 1_000_000),
                                  ("/v1/jobs/{id}/events", "Last-Event-ID", 0, 10**9),
                                  ("/v1/jobs", "limit", 1, 200)):
        schema = parameters[path, name]
        assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", low, high)


# --- non-finite numbers: refused on the way in, null plus a flag on the way out -----------

def json_body_routes(app) -> list[tuple[str, str]]:
    """(method, rule) of every /v1 route whose OpenAPI operation takes a JSON body."""
    doc = app.test_client().get("/openapi.json").get_json()
    return sorted((method.upper(), path) for path, ops in doc["paths"].items()
                  for method, op in ops.items() if path.startswith("/v1/")
                  and "application/json" in op.get("requestBody", {}).get("content", {}))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_every_json_endpoint_refuses_non_finite_numbers(app, client, alice, xor_dataset,
                                                        literal):
    routes = json_body_routes(app)
    assert len(routes) >= 3, routes
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", xor_dataset, path)
        resp = client.open(url, method=method, data='{"x": %s}' % literal, headers=alice,
                           content_type="application/json")
        assert resp.status_code == 400, (method, path, resp.status_code)
        assert resp.get_json()["error"]["code"] == "malformed_json"


def test_a_diverging_job_answers_strict_json(client, alice, train):
    from service.jsonio import strict_loads

    ds = client.post("/v1/datasets", json={"name": "r", "X": [[1.0], [2.0], [3.0], [4.0]],
                                           "y": [1.0, 2.0, 3.0, 4.0], "task": "regression"},
                     headers=alice).get_json()["id"]
    body = {"dataset_id": ds, "network": {"layers": [{"units": 1, "activation": "identity"}]},
            "loss": "mse", "optimizer": {"name": "sgd", "learning_rate": 10.0},
            "training": {"epochs": 400, "batch_size": 4, "seed": 0}}
    job_id = client.post("/v1/jobs", json=body, headers=alice).get_json()["id"]
    assert train(job_id) == "failed"
    job = strict_loads(client.get(f"/v1/jobs/{job_id}", headers=alice).get_data())
    assert "diverged" in job["error"]
    metrics = strict_loads(client.get(f"/v1/jobs/{job_id}/metrics", headers=alice).get_data())
    assert metrics["nonfinite"] == any(v is None for v in metrics["train_loss"])


def test_a_non_finite_stored_metric_is_null_with_the_flag(client, alice, xor_dataset,
                                                          session_factory):
    from jobs.db import session_scope
    from jobs.models import EpochMetric

    job_id = client.post("/v1/jobs", json=xor_job(xor_dataset), headers=alice).get_json()["id"]
    with session_scope(session_factory) as session:
        session.add(EpochMetric(job_id=job_id, epoch=1, train_loss=0.5))
        session.add(EpochMetric(job_id=job_id, epoch=2, train_loss=float("nan")))
    resp = client.get(f"/v1/jobs/{job_id}/metrics", headers=alice)
    assert b"NaN" not in resp.get_data()
    assert resp.get_json()["train_loss"] == [0.5, None]
    assert resp.get_json()["nonfinite"] is True


# --- misconfiguration --------------------------------------------------------------------

def test_security_headers_on_json_and_errors(client, alice):
    for resp in (client.get("/health"), client.get("/v1/jobs", headers=alice),
                 client.get("/v1/jobs"), client.get("/nowhere")):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert client.get("/v1/jobs", headers=alice).headers["Cache-Control"] == "no-store"


def test_html_pages_get_a_strict_csp(app, client):
    pages = [r.rule for r in app.url_map.iter_rules() if "GET" in r.methods and not r.arguments
             and not r.rule.startswith(("/v1/", "/docs"))]
    html = [p for p in pages if client.get(p).mimetype == "text/html"]
    for path in html:
        csp = client.get(path).headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp, path
        assert "default-src 'self'" in csp and "object-src 'none'" in csp


def test_cors_is_closed_by_default(client, alice):
    resp = client.get("/v1/jobs", headers={**alice, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    pre = client.options("/v1/jobs", headers={"Origin": "https://evil.example",
                                              "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in pre.headers


def test_cors_allows_only_listed_origins(tmp_path):
    from service import create_app

    settings = Settings.from_env(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/c.db",
                                 broker_url="memory://", cors_origins=("https://ok.example",))
    client = create_app(settings).test_client()
    pre = client.options("/v1/jobs", headers={"Origin": "https://ok.example",
                                              "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == "https://ok.example"
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    other = client.options("/v1/jobs", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_internal_errors_leak_no_stack_trace(app, alice):
    @app.get("/v1/test-only-boom")
    def boom():
        raise RuntimeError("secret detail /etc/gradtrace/db-password")

    resp = app.test_client().get("/v1/test-only-boom", headers=alice)
    assert resp.status_code == 500
    assert resp.get_json() == {"error": {"code": "internal_error",
                                         "message": "internal server error", "details": []}}
    assert b"Traceback" not in resp.get_data() and b"secret" not in resp.get_data()
    assert app.debug is False and app.config["PROPAGATE_EXCEPTIONS"] is False


@pytest.mark.parametrize("broker, refused", [("redis://r:6379/0", True),
                                             ("sqla+sqlite:///b.db", False),
                                             ("memory://", False)])
def test_the_public_dev_pepper_is_refused_outside_development(broker, refused):
    settings = Settings.from_env(broker_url=broker)
    if refused:
        with pytest.raises(InsecureConfiguration, match="TOKEN_PEPPER"):
            check_deployment_settings(settings)
    else:
        check_deployment_settings(settings)
    check_deployment_settings(Settings.from_env(broker_url=broker, token_pepper="s3cret"))


def test_access_log_never_records_the_query_string_or_headers():
    """A token pasted into a URL must not land in gunicorn's access log."""
    conf: dict = {}
    exec((ROOT / "service/gunicorn_conf.py").read_text(), conf)  # noqa: S102 - our own file
    fmt = conf["access_log_format"]
    assert "%(U)s" in fmt
    for leaky in ("%(r)s", "%(q)s", "%({authorization}i)s", "%(h)s %(l)s %(u)s"):
        assert leaky not in fmt


# --- no unsafe deserialisation anywhere ---------------------------------------------------

PACKAGES = ("mlp", "jobs", "service", "worker", "gradtrace")


def python_sources():
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_no_module_imports_pickle_or_joblib():
    pattern = re.compile(r"^\s*(import|from)\s+(c?pickle|joblib|dill|shelve|marshal)\b", re.M)
    offenders = [str(p) for p in python_sources() if pattern.search(p.read_text())]
    assert not offenders


def test_every_np_load_refuses_pickles():
    calls = []
    for path in python_sources():
        text = path.read_text()
        for match in re.finditer(r"np\.load\(", text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            calls.append((path, text[match.start():end + 1]))
    assert calls, "expected the dataset and model loaders to call np.load"
    unsafe = [f"{p}: {c}" for p, c in calls if "allow_pickle=False" not in c]
    assert not unsafe


def test_tokens_never_reach_the_logs(app, alice, caplog):
    """Neither a header token nor one pasted into a query string is logged, even on a 500."""
    @app.get("/v1/test-only-fail")
    def fail():
        raise RuntimeError("boom")

    client = app.test_client()
    secret = alice["Authorization"].split()[1]
    with caplog.at_level("DEBUG"):
        client.get("/v1/test-only-fail", headers=alice)
        client.get(f"/v1/jobs?access_token={secret}")
        client.get("/v1/jobs", headers={"Authorization": f"Bearer {secret}x"})
    assert "boom" in caplog.text  # the 500 was logged, with its traceback...
    assert secret not in caplog.text  # ...and no token anywhere
