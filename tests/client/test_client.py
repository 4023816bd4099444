"""gradtrace.client.Client against the real app over real HTTP, with a real worker."""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest

from gradtrace.client import (
    ApiError,
    AuthError,
    Client,
    DoneEvent,
    EpochEvent,
    NotFoundError,
    StatusEvent,
)
from tests.client.live_server import EMBEDDED_ONLY
from tests.factories import xor_job

pytestmark = [pytest.mark.integration, EMBEDDED_ONLY]

XOR_X = [[0, 0], [0, 1], [1, 0], [1, 1]]


def spec(epochs: int = 200, **training) -> dict:
    return xor_job("", epochs=epochs, **training)


@pytest.fixture(scope="module")
def finished(gt, xor_id):
    job = gt.submit(spec(300), xor_id, name="finished")
    return gt.wait(job.id, timeout=120)


def test_health_and_ready(gt):
    assert gt.health() == {"status": "ok"}
    ready = gt.ready()
    assert ready.ready is True and ready.checks == {"database": True, "broker": True}


def test_datasets_from_json_builtin_csv_and_npz(gt, tmp_path):
    from_json = gt.create_dataset("tiny", XOR_X, [0, 1, 1, 0])
    assert (from_json.n_samples, from_json.n_features, from_json.task) == (4, 2, "classification")
    moons = gt.create_builtin_dataset("moons", n_samples=50, noise=0.2, seed=3, name="m")
    assert (moons.name, moons.n_samples, moons.source) == ("m", 50, "builtin")
    csv = tmp_path / "points.csv"
    csv.write_text("a,b,label\n0,0,no\n0,1,yes\n1,0,yes\n1,1,no\n")
    uploaded = gt.upload_dataset(csv, target="label")
    assert (uploaded.name, uploaded.source, sorted(uploaded.classes)) == (
        "points", "csv", ["no", "yes"])
    buf = io.BytesIO()
    np.savez(buf, X=np.random.default_rng(0).normal(size=(10, 3)), y=np.arange(10.0))
    npz = tmp_path / "reg.npz"
    npz.write_bytes(buf.getvalue())
    reg = gt.upload_dataset(npz, task="regression")
    assert (reg.n_features, reg.task, reg.source) == (3, "regression", "npz")
    listed = {d.id for d in gt.iter_datasets(page_size=2)}
    assert {from_json.id, moons.id, uploaded.id, reg.id} <= listed
    assert gt.get_dataset(moons.id).raw["sha256"] == moons.sha256
    gt.delete_dataset(reg.id)
    with pytest.raises(NotFoundError) as err:
        gt.get_dataset(reg.id)
    assert err.value.status == 404 and err.value.code == "not_found"


def test_submit_is_idempotent_and_wait_returns_the_finished_job(gt, xor_id):
    first = gt.submit(spec(100), xor_id, name="idem", idempotency_key="client-test-1")
    again = gt.submit(spec(100), xor_id, name="idem", idempotency_key="client-test-1")
    assert again.id == first.id and first.status in ("queued", "running", "succeeded")
    done = gt.wait(first.id, timeout=120)
    assert done.status == "succeeded" and done.finished and done.epoch == done.epochs == 100
    assert done.summary["final_train_accuracy"] == 1.0


def test_list_and_iterate_jobs_across_cursor_pages(gt, xor_id, finished):
    ids = {gt.submit(spec(20), xor_id, name=f"page{i}").id for i in range(3)}
    page = gt.list_jobs(limit=2)
    assert len(page.items) == 2 and page.next_cursor
    every = [job.id for job in gt.iter_jobs(page_size=2)]
    assert ids | {finished.id} <= set(every) and len(every) == len(set(every))
    for job_id in ids:
        gt.wait(job_id, timeout=120)
    assert finished.id in {j.id for j in gt.iter_jobs(status="succeeded")}
    assert all(j.status == "succeeded" for j in gt.iter_jobs(status="succeeded"))


def test_metrics_json_csv_since_and_downsampled(gt, finished):
    m = gt.metrics(finished.id)
    assert m.epoch == list(range(1, 301)) and m.status == "succeeded"
    assert [layer["layer"] for layer in m.layers] == [1, 2]
    assert gt.metrics(finished.id, since_epoch=295).epoch == [296, 297, 298, 299, 300]
    small = gt.metrics(finished.id, max_points=20)
    assert len(small.epoch) <= 20 and min(small.train_loss) == min(m.train_loss)
    events = m.epoch_events()
    assert events[-1].epoch == 300 and events[-1].layers[1].delta_norm == m.layers[1][
        "delta_norm"][-1]
    csv = gt.metrics_csv(finished.id, since_epoch=298)
    lines = csv.strip().splitlines()
    assert lines[0].startswith("epoch,train_loss") and len(lines) == 3


def test_model_npz_predict_and_plot(gt, finished):
    model = gt.model(finished.id)
    assert [layer["layer"] for layer in model["layers"]] == [1, 2]
    with np.load(io.BytesIO(gt.model_npz(finished.id)), allow_pickle=False) as npz:
        assert len(npz.files) >= 2
    prediction = gt.predict(finished.id, XOR_X)
    assert prediction.predictions == ["0", "1", "1", "0"]
    assert len(prediction.probabilities) == 4
    png = gt.plot_png(finished.id, kind="loss", width=300, height=200)
    assert png.startswith(b"\x89PNG") and png[16:24] == (300).to_bytes(4, "big") + (
        200).to_bytes(4, "big")


def test_stream_yields_typed_events_until_done(gt, xor_id):
    job = gt.submit(spec(150), xor_id, name="streamed")
    events = list(gt.stream(job.id))
    assert isinstance(events[0], StatusEvent)
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert [e.epoch for e in epochs] == list(range(1, 151))
    assert epochs[0].id == 1 and epochs[0].layers[0].layer == 1
    assert epochs[-1].layers[1].weight_grad_norm > 0
    assert isinstance(events[-1], DoneEvent) and events[-1].job.status == "succeeded"
    resumed = list(gt.stream(job.id, last_event_id=148))
    assert [e.epoch for e in resumed if isinstance(e, EpochEvent)] == [149, 150]


def test_stream_reconnects_when_the_server_ends_it(live, gt, xor_id):
    job_id = live.queued_job(xor_id)
    seen: list = []
    with Client(live.short_url, live.token) as short:
        reader = threading.Thread(target=lambda: seen.extend(short.stream(job_id)))
        reader.start()
        reader.join(2.6)  # the short server ends each stream after 1 s
        gt.cancel(job_id)
        reader.join(30)
    statuses = [e.status for e in seen if isinstance(e, StatusEvent)]
    assert statuses.count("queued") >= 2 and statuses[-1] == "cancelled"
    assert isinstance(seen[-1], DoneEvent) and seen[-1].job.status == "cancelled"


def test_wait_times_out_and_cancel_twice_is_a_conflict(gt, live, xor_id):
    job_id = live.queued_job(xor_id)
    with pytest.raises(TimeoutError):
        gt.wait(job_id, timeout=0.5)
    assert gt.cancel(job_id).status == "cancelled"
    with pytest.raises(ApiError) as err:
        gt.cancel(job_id)
    assert err.value.status == 409 and err.value.code == "conflict"


def test_errors_carry_status_code_and_details(gt, live, xor_id):
    bad = spec()
    bad["network"] = {"layers": [{"units": 4, "activation": "sigmoidd"},
                                 {"units": 1, "activation": "sigmoid"}]}
    with pytest.raises(ApiError) as err:
        gt.submit(bad, xor_id)
    assert err.value.status == 422 and err.value.code == "invalid"
    assert err.value.details[0]["field"] == "network.layers[0].activation"
    with pytest.raises(NotFoundError):
        gt.get_job("no-such-job")
    with pytest.raises(NotFoundError):
        list(gt.stream("no-such-job"))
    with Client(live.url, "wrong-token") as stranger, pytest.raises(AuthError) as err:
        stranger.list_jobs()
    assert err.value.status == 401 and err.value.code == "unauthorized"
