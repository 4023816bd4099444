"""Looking inside backpropagation: gradient check, trace, diagnosis history, rerun, diff."""
from __future__ import annotations

from typing import Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field

from jobs import submission
from jobs.gradcheck_store import read_gradchecks
from jobs.introspection import MAX_TRACE_ROWS, gradcheck_job, trace_job
from jobs.job_views import job_to_dict
from jobs.reproduction import diff_jobs, rerun
from service.auth import current_user_id
from service.queue import publish_job
from service.schemas import IdPath, OptionalTextInt, Strict, StrictBody
from service.session import db

bp = APIBlueprint("backprop", __name__, url_prefix="/v1/jobs", abp_tags=[Tag(name="backprop")],
                  abp_security=[{"bearer": []}])

Epoch = Field(None, ge=0, le=10**9, description="a stored epoch; null: the final weights")


class GradcheckBody(StrictBody):
    epoch: int | None = Epoch
    samples: int = Field(8, ge=1, le=64)


class TraceBody(StrictBody):
    X: list[list[float]] = Field(min_length=1, max_length=MAX_TRACE_ROWS)
    y: list[Any] = Field(min_length=1, max_length=MAX_TRACE_ROWS,
                         description="class labels, or regression targets")
    epoch: int | None = Epoch


class DiffPath(Strict):
    id: str = Field(max_length=64)
    other_id: str = Field(max_length=64)


class DiffQuery(Strict):
    max_points: OptionalTextInt = Field(None, ge=2, le=1_000_000)


def _settings():
    return current_app.config["GRADTRACE"]


def _job(job_id: str):
    return submission.get_job(db(), current_user_id(), job_id)


@bp.post("/<id>/gradcheck", summary="Backprop against finite differences, per layer",
         responses={200: None, 404: None, 409: None, 422: None})
def gradcheck(path: IdPath, body: GradcheckBody):
    return gradcheck_job(db(), _settings(), _job(path.id), epoch=body.epoch,
                         samples=body.samples)


@bp.post("/<id>/trace", summary="Every layer's z, a, δ, ∂L/∂W, ∂L/∂b for a few rows",
         responses={200: None, 404: None, 409: None, 422: None})
def trace(path: IdPath, body: TraceBody):
    return trace_job(db(), _settings(), _job(path.id), X=body.X, y=body.y, epoch=body.epoch)


@bp.get("/<id>/gradchecks", summary="Gradient checks stored during training, by epoch")
def gradchecks(path: IdPath):
    job = _job(path.id)
    return {"job_id": job.id, "items": read_gradchecks(db(), job)}


@bp.post("/<id>/rerun", summary="Submit the same spec, seed included, on the same dataset",
         responses={202: None, 404: None, 409: None})
def rerun_job(path: IdPath):
    session = db()
    job = rerun(session, _settings(), current_user_id(), path.id)
    session.commit()
    publish_job(job.id)  # after the commit: the worker must find the row
    return job_to_dict(job), 202, {"Location": f"/v1/jobs/{job.id}"}


@bp.get("/<id>/diff/<other_id>", summary="Spec differences and both curves by epoch")
def diff(path: DiffPath, query: DiffQuery):
    return diff_jobs(db(), current_user_id(), path.id, path.other_id,
                     max_points=query.max_points)
