"""The /trace page in real headless Chromium, and the examples of examples/ trained by a
real worker: each example's diagnosis, and (GRADTRACE_DOC_SCREENSHOTS=1) its pictures
for examples/README.md."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.browser import test_dashboard_browser as dashboard
from tests.browser.test_dashboard_browser import sign_in, wait_js
from tests.integration.services import wait_for_status

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXPECTED_FLAGS = {
    "xor_sigmoid_sgd": {"loss_plateau"},
    "deep_sigmoid": {"vanishing_gradients", "loss_plateau"},
    "deep_relu_he": set(),
    "lr_too_high": {"learning_rate_too_high", "saturated_units", "loss_plateau"},
    "diverging_lr": {"divergence"},
}
# Flags a chaotic run raises or not depending on the exact trajectory, which differs with
# the CPU's BLAS kernel (examples/README.md, section 3).
MAY_ALSO_FLAG = {"lr_too_high": {"vanishing_gradients"}}
TRACE_ROWS = {"xor": ([[1, 0]], ["1"]), "moons": ([[0.5, 0.25]], ["1"])}


http = dashboard.http  # the same module-scoped API client fixture

DATASETS = {"xor": {"name": "xor", "builtin": "xor"},  # the ones examples/README.md makes
            "moons": {"name": "moons", "builtin": "moons", "n_samples": 400, "noise": 0.2,
                      "seed": 0}}


@pytest.fixture(scope="module")
def datasets(http) -> dict[str, str]:
    created = {key: http.post("/v1/datasets", json=body) for key, body in DATASETS.items()}
    assert all(resp.status_code == 201 for resp in created.values())
    return {key: resp.json()["id"] for key, resp in created.items()}


def run_example(http, datasets, name: str) -> dict:
    body = json.loads((EXAMPLES / f"{name}.json").read_text())
    body["dataset_id"] = datasets["xor" if name.startswith("xor") else "moons"]
    resp = http.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    return wait_for_status(http, resp.json()["id"], {"succeeded", "failed"}, timeout=180)


def open_trace(page, live, job_id: str, rows: tuple) -> None:
    page.goto(f"{live.url}/trace?job={job_id}")
    page.fill("#token", live.token)
    page.fill("#X", json.dumps(rows[0]))
    page.fill("#y", json.dumps(rows[1]))
    page.click("#run")
    wait_js(page, "!document.getElementById('view').hidden "
                  "|| document.getElementById('status').className === 'error'")


def screenshot(page, name: str) -> None:
    if os.environ.get("GRADTRACE_DOC_SCREENSHOTS") == "1":
        (EXAMPLES / "img").mkdir(exist_ok=True)
        page.screenshot(path=str(EXAMPLES / "img" / name), full_page=True)


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []

    def console(msg) -> None:
        # HTTP statuses are the tests' business (the favicon's 404, a refused trace).
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(msg.text)

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert errors == []  # no script error, no CSP violation ("Refused to ...")


def test_trace_page_draws_the_network_and_steps_through_the_equations(page, live, http,
                                                                       datasets):
    job = run_example(http, datasets, "xor_sigmoid_sgd")
    open_trace(page, live, job["id"], TRACE_ROWS["xor"])
    assert page.locator("#status").get_attribute("class") != "error", \
        page.locator("#status").text_content()
    # Units 2 + 2 + 1; connections 2×2 + 2×1, each titled with its gradient.
    assert page.locator("#network circle").count() == 5
    assert page.locator("#network line").count() == 6
    assert page.locator("#network line title").first.text_content().startswith("∂L/∂W[0][0] = ")
    assert page.locator("#step-equation").text_content().startswith("z1 = a0 W1 + b1")
    assert "a0 = [1.0000, 0.0000]" in page.locator("#step-numbers").text_content()
    assert page.locator("#mode-forward").get_attribute("class") == "on"
    steps = int(page.locator("#step-count").text_content().split(" of ")[1])
    assert steps == 2 * 2 + 1 + 2 * 2  # forward, loss, backward
    for _ in range(steps - 1):
        page.click("#next")
    assert page.locator("#step-equation").text_content().startswith("∂L/∂W1 = a0ᵀ δ1")
    assert page.locator("#mode-backward").get_attribute("class") == "on"
    assert "δ1" in page.locator("#network").text_content()
    screenshot(page, "xor-trace.png")


def test_trace_page_shows_api_errors_and_user_text_as_text(page, live, http, datasets):
    body = json.loads((EXAMPLES / "deep_relu_he.json").read_text())
    body.update(dataset_id=datasets["moons"], name="<img src=x onerror=alert(1)>")
    job_id = http.post("/v1/jobs", json=body).json()["id"]
    wait_for_status(http, job_id, {"succeeded", "failed"}, timeout=120)
    open_trace(page, live, job_id, ([[1, 2, 3]], ["1"]))
    status = page.locator("#status")
    assert status.get_attribute("class") == "error"
    assert "X[0]" in status.text_content()
    open_trace(page, live, job_id, TRACE_ROWS["moons"])
    assert "<img src=x onerror=alert(1)>" in status.text_content()
    assert page.locator("img").count() == 0


@pytest.mark.parametrize("name", [n for n in EXPECTED_FLAGS if n != "xor_sigmoid_sgd"])
def test_examples_raise_their_flags_on_a_real_worker(page, live, http, datasets, name):
    job = run_example(http, datasets, name)
    codes = {f["code"] for f in job["diagnosis"]["flags"]}
    expected = EXPECTED_FLAGS[name]
    assert expected <= codes <= expected | MAY_ALSO_FLAG.get(name, set()), job["diagnosis"]
    sign_in(page, live)
    if job["status"] == "succeeded":
        open_trace(page, live, job["id"], TRACE_ROWS["moons"])
        assert page.locator("#flag-list li").count() == len(codes)
        page.click("#mode-backward")  # the error δ on the units, flowing back
        screenshot(page, f"{name}-trace.png")
    page.goto(f"{live.url}/#/jobs/{job['id']}")
    page.wait_for_timeout(1500)  # let the charts draw
    screenshot(page, f"{name}-dashboard.png")
