"""GET /v1/jobs/{id}/plot.png: real PNGs of the requested size, rendered per job."""
from __future__ import annotations

import io
import struct
import zlib

import pytest

from tests.factories import xor_job


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature and its CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])
    assert data.endswith(b"IEND\xaeB`\x82")
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def trained(client, alice, xor_dataset, train):
    def make(**training) -> str:
        job = client.post("/v1/jobs", json=xor_job(xor_dataset, **training),
                          headers=alice).get_json()
        assert train(job["id"]) == "succeeded"
        return job["id"]
    return make


def get_png(client, headers, job_id: str, **params):
    resp = client.get(f"/v1/jobs/{job_id}/plot.png", query_string=params, headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "image/png"
    return resp.data


@pytest.mark.parametrize("kind", ["all", "loss", "gradients"])
def test_png_has_the_requested_size(client, alice, trained, kind):
    data = get_png(client, alice, trained(epochs=50), kind=kind, width=640, height=480)
    assert png_size(data) == (640, 480)


def test_default_size_and_decodable_pixels(client, alice, trained):
    from matplotlib.image import imread

    data = get_png(client, alice, trained(epochs=50))
    assert png_size(data) == (1000, 800)
    pixels = imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (800, 1000)
    assert pixels.std() > 0.05  # curves and text, not a blank canvas


def test_two_jobs_give_different_pictures(client, alice, trained):
    a = get_png(client, alice, trained(epochs=40, seed=1))
    b = get_png(client, alice, trained(epochs=120, seed=2))
    assert a != b


def test_kinds_and_downsampling_change_the_picture(client, alice, trained):
    job_id = trained(epochs=300)
    pictures = {kind: get_png(client, alice, job_id, kind=kind)
                for kind in ("all", "loss", "gradients")}
    assert len(set(pictures.values())) == 3
    assert get_png(client, alice, job_id, max_points=10) != pictures["all"]


def test_job_without_epochs_renders_a_placeholder_not_an_error(client, alice, xor_dataset):
    job = client.post("/v1/jobs", json=xor_job(xor_dataset), headers=alice).get_json()
    data = get_png(client, alice, job["id"], width=400, height=300)
    assert png_size(data) == (400, 300)


def test_refusals(client, alice, auth, trained):
    job_id = trained(epochs=10)
    assert client.get(f"/v1/jobs/{job_id}/plot.png").status_code == 401
    foreign = client.get(f"/v1/jobs/{job_id}/plot.png", headers=auth("mallory"))
    assert foreign.status_code == 404 and foreign.get_json()["error"]["code"] == "not_found"
    for params in ({"kind": "pie"}, {"width": 10}, {"max_points": 1}, {"colour": "red"}):
        resp = client.get(f"/v1/jobs/{job_id}/plot.png", query_string=params, headers=alice)
        assert resp.status_code == 422, params
        assert resp.get_json()["error"]["code"] == "invalid"
