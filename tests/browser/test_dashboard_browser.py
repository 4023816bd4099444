"""The dashboard in real headless Chromium: sign in, watch a running job's curves grow,
cancel it, compare jobs, read a sweep's ranking; job names stay text."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.factories import long_job, xor_job
from tests.integration.services import wait_for_status

DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"
DEEP_SPEC = {
    "network": {"layers": [{"units": 16, "activation": "tanh"}] * 4
                + [{"units": 1, "activation": "sigmoid"}]},
    "loss": "binary_cross_entropy",
    "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
    "training": {"epochs": 400, "batch_size": 32, "seed": 1, "validation_split": 0.25},
}


@pytest.fixture(scope="module")
def http(live):
    with live.client() as client:
        yield client


@pytest.fixture(scope="module")
def datasets(http):
    ids = {}
    for builtin in ("xor", "moons"):
        resp = http.post("/v1/datasets", json={"name": builtin, "builtin": builtin,
                                               "n_samples": 400, "noise": 0.25})
        assert resp.status_code == 201, resp.text
        ids[builtin] = resp.json()["id"]
    return ids


def submit(http, body) -> str:
    resp = http.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def sign_in(page, live, token=None):
    page.goto(live.url + "/")
    page.fill("#token", token or live.token)
    page.click("form.login button[type=submit]")


def wait_js(page, expression: str, timeout: int = 20_000) -> None:
    """Poll a JavaScript expression from Python: Playwright's wait_for_function evaluates
    its predicate with eval(), which the page's CSP (rightly) forbids."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout} ms: {expression}")
        page.wait_for_timeout(100)


def points(page, selector: str) -> int:
    return int(page.get_attribute(selector, "data-points") or 0)


def doc_screenshot(page, name: str) -> None:
    """Refresh the README's screenshots when asked (GRADTRACE_DOC_SCREENSHOTS=1)."""
    if os.environ.get("GRADTRACE_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(500)
        page.screenshot(path=str(DOC_IMAGES / name), full_page=True)


def test_a_wrong_token_is_refused_and_a_right_one_signs_in(page, live):
    sign_in(page, live, token="gt_not-a-real-token")
    alert = page.locator("form.login .error")
    alert.wait_for()
    assert "not accepted" in alert.inner_text()
    assert page.evaluate("sessionStorage.getItem('gradtrace.token')") is None
    page.fill("#token", live.token)
    page.click("form.login button[type=submit]")
    page.locator("#jobs-table").wait_for()
    assert page.evaluate("sessionStorage.getItem('gradtrace.token')") == live.token
    # The 401 made the browser log a failed request; nothing else may be logged.
    assert all("401" in e for e in page.console_errors), page.console_errors


def test_a_running_job_grows_live_and_can_be_cancelled(page, live, http, datasets):
    job_id = submit(http, long_job(datasets["moons"]))
    wait_for_status(http, job_id, {"running"})
    sign_in(page, live)
    page.locator("#jobs-table").wait_for()
    page.click(f"tr[data-job-id='{job_id}'] a.job-link")
    wait_js(page, "document.querySelector('#loss-chart')?.dataset.points > 0")
    first = points(page, "#loss-chart")
    wait_js(page,
        f"document.querySelector('#loss-chart').dataset.points > {first + 50}")
    assert points(page, "#grad-chart") > first and points(page, "#delta-chart") > first
    assert int(page.get_attribute("#grad-heatmap", "data-columns")) > first
    legend = page.locator("#grad-chart .u-legend").inner_text()
    assert "layer 1 (4 tanh)" in legend and "layer 2 (1 sigmoid)" in legend
    assert page.locator("#job-status").inner_text() == "running"
    page.check("#loss-log")  # the log toggle rebuilds the chart and keeps its points
    assert points(page, "#loss-chart") > first
    page.click("#cancel-job")
    wait_js(page,
        "document.querySelector('#job-status').innerText.trim() === 'cancelled'",
        timeout=30_000)
    assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    assert page.locator("#cancel-job").count() == 0
    assert page.console_errors == []


def test_a_finished_job_shows_every_panel(page, live, http, datasets):
    body = {"dataset_id": datasets["moons"], "name": "moons, 4x16 tanh", **DEEP_SPEC}
    job_id = submit(http, body)
    job = wait_for_status(http, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    sign_in(page, live)
    page.locator("#jobs-table").wait_for()
    page.goto(f"{live.url}/#/jobs/{job_id}")
    wait_js(page, "document.querySelector('#loss-chart')?.dataset.points >= 400")
    assert points(page, "#accuracy-chart") == 400
    assert "validation" in page.locator("#loss-chart .u-legend").inner_text()
    assert '"momentum": 0.9' in page.locator("#job-spec").inner_text()
    assert "final train loss" in page.locator("#job-summary").inner_text()
    assert page.locator("#job-status").inner_text() == "succeeded"
    codes = {f["code"] for f in http.get(f"/v1/jobs/{job_id}").json()["diagnosis"]["flags"]}
    shown = set(page.locator("#job-diagnosis .flag").evaluate_all(
        "nodes => nodes.map(n => n.dataset.code)"))
    assert shown == codes
    assert page.get_attribute("#trace-link", "href") == f"/trace?job={job_id}"
    doc_screenshot(page, "dashboard-job.png")
    assert page.console_errors == []


def test_the_compare_view_overlays_jobs_picked_from_the_list(page, live, http, datasets):
    ids = [submit(http, {**xor_job(datasets["xor"], epochs=300), "name": f"xor lr={lr}",
                         "optimizer": {"name": "sgd", "learning_rate": lr}})
           for lr in (0.1, 0.5, 2.0)]
    for job_id in ids:
        assert wait_for_status(http, job_id, {"succeeded", "failed"})["status"] == "succeeded"
    sign_in(page, live)
    for job_id in ids:
        page.check(f"#jobs-table input[data-job-id='{job_id}']")
    page.click("#compare-selected")
    wait_js(page, "document.querySelector('#compare-chart')?.dataset.points >= 300")
    rows = page.locator("#compare-table tbody tr")
    assert rows.count() == 3
    # The table shows what differs between the runs: the learning rate.
    assert "optimizer.learning_rate" in page.locator("#compare-table thead").text_content()
    legend = page.locator("#compare-chart .u-legend").inner_text()
    assert all(f"xor lr={lr}" in legend for lr in ("0.1", "0.5", "2"))
    doc_screenshot(page, "dashboard-compare.png")
    page.select_option("#compare-curve", "train_accuracy")
    wait_js(page, "location.hash.includes('curve=train_accuracy')")
    assert points(page, "#compare-chart") >= 300
    assert page.console_errors == []


def test_the_sweep_view_ranks_trials_like_the_api(page, live, http, datasets):
    body = {"name": "xor learning rates", "dataset_id": datasets["xor"],
            "base": {k: v for k, v in xor_job(datasets["xor"]).items()
                     if k not in ("dataset_id", "name")},
            "search": {"method": "grid", "parameters": {
                "optimizer.learning_rate": [0.05, 0.5, 2.0]}},
            "parallel_trials": 2, "metric": "final_train_loss"}
    resp = http.post("/v1/sweeps", json=body)
    assert resp.status_code == 202, resp.text
    sweep_id = resp.json()["id"]
    for trial in resp.json()["trials"]:
        wait_for_status(http, trial["id"], {"succeeded", "failed"})
    expected = [t["id"] for t in http.get(f"/v1/sweeps/{sweep_id}").json()["trials"]]
    sign_in(page, live)
    page.locator("#jobs-table").wait_for()
    page.click("nav a[data-nav=sweeps]")
    page.click(f"tr[data-sweep-id='{sweep_id}'] a")
    page.locator("#sweep-trials tbody tr").nth(2).wait_for()
    shown = page.eval_on_selector_all("#sweep-trials tbody tr", "rows => rows.map("
                                      "r => [r.dataset.jobId, r.dataset.rank])")
    assert shown == [[job_id, str(rank)] for rank, job_id in enumerate(expected, 1)]
    assert page.locator("#sweep-trials tr.best").get_attribute("data-job-id") == expected[0]
    wait_js(page, "document.querySelector('#sweep-chart')?.dataset.points >= 300")
    doc_screenshot(page, "dashboard-sweep.png")
    assert page.console_errors == []


def test_job_names_are_shown_as_text_never_as_html(page, live, http, datasets):
    name = "<img src=x onerror=\"window.__pwned=1\"><b>bold</b>"
    job_id = submit(http, {**xor_job(datasets["xor"], epochs=5), "name": name})
    sign_in(page, live)
    link = page.locator(f"tr[data-job-id='{job_id}'] a.job-link")
    assert link.inner_text() == name
    assert page.locator("#jobs-table img, #jobs-table b").count() == 0
    page.goto(f"{live.url}/#/jobs/{job_id}")
    assert page.locator("#job-name").inner_text() == name
    assert page.evaluate("window.__pwned") is None
