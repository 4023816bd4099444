"""The Python client of the gradtrace API, on httpx.

    from gradtrace.client import Client
    with Client("http://127.0.0.1:8000", token) as gt:
        ds = gt.create_builtin_dataset("moons")
        job = gt.submit({"network": {...}, "training": {"epochs": 200}}, ds.id)
        for event in gt.stream(job.id):
            ...

Every call returns a typed result (gradtrace.client_types) or raises: `ApiError` (with
the API's status, code, message and details; `AuthError` for 401/403, `NotFoundError` for
404) or `ServerUnavailable` when the server cannot be reached. May import httpx,
httpx-sse and the standard library only, so it works on any machine that can reach the API.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import httpx
from httpx_sse import SSEError, connect_sse

from gradtrace.client_errors import (
    ApiError,
    AuthError,
    ClientError,
    NotFoundError,
    ServerUnavailable,
    error_for,
)
from gradtrace.client_types import (
    Dataset,
    DoneEvent,
    EpochEvent,
    Event,
    Job,
    JobPage,
    Metrics,
    Prediction,
    Readiness,
    StatusEvent,
    from_json,
    parse_event,
)

__all__ = [
    "ApiError",
    "AuthError",
    "Client",
    "ClientError",
    "Dataset",
    "DoneEvent",
    "EpochEvent",
    "Event",
    "Job",
    "JobPage",
    "Metrics",
    "NotFoundError",
    "Prediction",
    "Readiness",
    "ServerUnavailable",
    "StatusEvent",
]

DEFAULT_URL = "http://127.0.0.1:8000"
# Reads on a stream may wait for the server's keep-alive (15 s by default).
STREAM_TIMEOUT = httpx.Timeout(30.0, read=90.0)


class Client:
    """One API endpoint and bearer token; a context manager that closes its connections."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, *,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport -----------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {self._http.base_url}: {exc}") from exc
        if response.is_error:
            raise error_for(response.status_code, _json_or_none(response), response.text[:200])
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # --- health --------------------------------------------------------------------------

    def health(self) -> dict:
        return self._json("GET", "/health")

    def ready(self) -> Readiness:
        """Readiness of the database and broker; a 503 is an answer, not an error."""
        try:
            response = self._http.get("/ready")
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {self._http.base_url}: {exc}") from exc
        body = _json_or_none(response) or {}
        if response.status_code not in (200, 503):
            raise error_for(response.status_code, body, response.text[:200])
        return Readiness(response.status_code == 200, dict(body.get("checks", {})))

    # --- datasets ------------------------------------------------------------------------

    def create_dataset(self, name: str, X: list, y: list, *, task: str | None = None) -> Dataset:
        body: dict = {"name": name, "X": X, "y": y}
        if task is not None:
            body["task"] = task
        return from_json(Dataset, self._json("POST", "/v1/datasets", json=body))

    def create_builtin_dataset(self, builtin: str, *, name: str | None = None,
                               n_samples: int = 200, noise: float = 0.1,
                               seed: int = 0) -> Dataset:
        body = {"name": name or builtin, "builtin": builtin, "n_samples": n_samples,
                "noise": noise, "seed": seed}
        return from_json(Dataset, self._json("POST", "/v1/datasets", json=body))

    def upload_dataset(self, path: str | Path, *, name: str | None = None,
                       target: str | None = None, task: str | None = None) -> Dataset:
        """Upload a CSV (needs `target`, the label column) or an .npz with arrays X and y."""
        path = Path(path)
        form = {"name": name or path.stem}
        form.update({k: v for k, v in (("target", target), ("task", task)) if v is not None})
        with path.open("rb") as fh:
            files = {"file": (path.name, fh, "application/octet-stream")}
            return from_json(Dataset, self._json("POST", "/v1/datasets", data=form, files=files))

    def list_datasets(self, *, limit: int = 50, offset: int = 0) -> list[Dataset]:
        body = self._json("GET", "/v1/datasets", params={"limit": limit, "offset": offset})
        return [from_json(Dataset, item) for item in body["items"]]

    def iter_datasets(self, *, page_size: int = 100) -> Iterator[Dataset]:
        offset = 0
        while page := self.list_datasets(limit=page_size, offset=offset):
            yield from page
            offset += len(page)

    def get_dataset(self, dataset_id: str) -> Dataset:
        return from_json(Dataset, self._json("GET", f"/v1/datasets/{dataset_id}"))

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # --- jobs ----------------------------------------------------------------------------

    def submit(self, spec: dict, dataset_id: str, *, name: str | None = None,
               idempotency_key: str | None = None) -> Job:
        """Submit a training job; `spec` holds the sections (network, loss, optimizer,
        training, ...). Repeating a call with the same Idempotency-Key returns the first job."""
        body = {**spec, "dataset_id": dataset_id}
        if name is not None:
            body["name"] = name
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job.parse(self._json("POST", "/v1/jobs", json=body, headers=headers))

    def list_jobs(self, *, status: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> JobPage:
        params = {k: v for k, v in (("status", status), ("limit", limit), ("cursor", cursor))
                  if v is not None}
        body = self._json("GET", "/v1/jobs", params=params)
        return JobPage([Job.parse(item) for item in body["items"]], body.get("next_cursor"))

    def iter_jobs(self, *, status: str | None = None, page_size: int = 50) -> Iterator[Job]:
        """Every job, newest first, following the cursors page by page."""
        cursor = None
        while True:
            page = self.list_jobs(status=status, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_job(self, job_id: str) -> Job:
        return Job.parse(self._json("GET", f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> Job:
        return Job.parse(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def wait(self, job_id: str, timeout: float | None = None, *, initial_delay: float = 0.1,
             max_delay: float = 5.0, factor: float = 2.0) -> Job:
        """Poll until the job finishes, backing off exponentially; TimeoutError if it
        is still running after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = initial_delay
        while True:
            job = self.get_job(job_id)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            time.sleep(delay)
            delay = min(max_delay, delay * factor)

    # --- results -------------------------------------------------------------------------

    def _metric_params(self, since_epoch: int, max_points: int | None, fmt: str) -> dict:
        params: dict = {"since_epoch": since_epoch, "format": fmt}
        if max_points is not None:
            params["max_points"] = max_points
        return params

    def metrics(self, job_id: str, *, since_epoch: int = 0,
                max_points: int | None = None) -> Metrics:
        body = self._json("GET", f"/v1/jobs/{job_id}/metrics",
                          params=self._metric_params(since_epoch, max_points, "json"))
        return from_json(Metrics, body)

    def metrics_csv(self, job_id: str, *, since_epoch: int = 0,
                    max_points: int | None = None) -> str:
        return self._request("GET", f"/v1/jobs/{job_id}/metrics",
                             params=self._metric_params(since_epoch, max_points, "csv")).text

    def model(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}/model")

    def model_npz(self, job_id: str) -> bytes:
        return self._request("GET", f"/v1/jobs/{job_id}/model", params={"format": "npz"}).content

    def predict(self, job_id: str, X: list[list[float]]) -> Prediction:
        return from_json(Prediction, self._json("POST", f"/v1/jobs/{job_id}/predict",
                                                json={"X": X}))

    def plot_png(self, job_id: str, *, kind: str = "all", max_points: int | None = None,
                 width: int | None = None, height: int | None = None) -> bytes:
        params = {k: v for k, v in (("kind", kind), ("max_points", max_points),
                                    ("width", width), ("height", height)) if v is not None}
        return self._request("GET", f"/v1/jobs/{job_id}/plot.png", params=params).content

    # --- live events ---------------------------------------------------------------------

    def stream(self, job_id: str, last_event_id: int | None = None, *,
               reconnect: bool = True, max_retries: int = 5) -> Iterator[Event]:
        """Typed events of the job until `done`. When the server ends the stream early
        (its events_max_s) or the connection drops, reconnect with Last-Event-ID, so no
        epoch is lost or repeated; give up after `max_retries` failures in a row."""
        failures = 0
        while True:
            try:
                for event in self._stream_once(job_id, last_event_id):
                    failures = 0
                    if isinstance(event, EpochEvent):
                        last_event_id = event.epoch
                    yield event
                    if isinstance(event, DoneEvent):
                        return
            except ServerUnavailable:
                failures += 1
                if not reconnect or failures > max_retries:
                    raise
                time.sleep(min(5.0, 0.2 * 2 ** failures))
                continue
            if not reconnect:
                return

    def _stream_once(self, job_id: str, last_event_id: int | None) -> Iterator[Event]:
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        try:
            with connect_sse(self._http, "GET", f"/v1/jobs/{job_id}/events", headers=headers,
                             timeout=STREAM_TIMEOUT) as source:
                if source.response.is_error:
                    source.response.read()
                    raise error_for(source.response.status_code,
                                    _json_or_none(source.response), source.response.text[:200])
                for sse in source.iter_sse():
                    event = parse_event(sse.event, json.loads(sse.data),
                                        int(sse.id) if sse.id else None)
                    if event is not None:
                        yield event
        except (httpx.TransportError, SSEError) as exc:
            raise ServerUnavailable(f"event stream of job {job_id} broke: {exc}") from exc


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
