"""GET /v1/jobs/{id}/plot.png: a job's loss curves and per-layer norms as a PNG."""
from __future__ import annotations

from typing import Literal

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field

from jobs import submission
from jobs.metric_reader import read_metrics
from service.auth import current_user_id
from service.metric_columns import running_columns
from service.plotting import render_job_plot
from service.schemas import IdPath, Strict, TextInt
from service.session import db

bp = APIBlueprint("plots", __name__, url_prefix="/v1/jobs", abp_tags=[Tag(name="results")],
                  abp_security=[{"bearer": []}])

PNG_DOC = {200: {"description": "image/png",
                 "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}}


class PlotQuery(Strict):
    kind: Literal["all", "loss", "gradients"] = "all"
    max_points: TextInt = Field(1000, ge=2, le=100_000)
    width: TextInt = Field(1000, ge=200, le=4000)
    height: TextInt = Field(800, ge=200, le=4000)


@bp.get("/<id>/plot.png", summary="Loss curves and per-layer gradient and δ norms (PNG)",
        responses={**PNG_DOC, 404: None, 422: None})
def job_plot(path: IdPath, query: PlotQuery):
    session = db()
    job = submission.get_job(session, current_user_id(), path.id)
    metrics = read_metrics(session, job, max_points=query.max_points,
                           running=running_columns())
    title = f"{job.name or 'job'} {job.id[:8]} ({job.status}, epoch {job.epoch}/{job.epochs})"
    png = render_job_plot(metrics, title=title, kind=query.kind, width=query.width,
                          height=query.height)
    return Response(png, mimetype="image/png", headers={"Cache-Control": "no-cache"})
