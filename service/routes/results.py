"""What a job produced: metrics (JSON or CSV), the model, predictions."""
from __future__ import annotations

import logging

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy.exc import SQLAlchemyError

from jobs import results, submission
from jobs.metric_archive import ensure_archive, load_full_json, metrics_json, with_head
from jobs.metric_reader import metrics_csv, read_columns
from jobs.models import FINISHED_STATUSES
from service.auth import current_user_id
from service.metric_columns import running_columns
from service.poll_cache import polled
from service.schemas import IdPath, MetricsQuery, ModelQuery, PredictBody
from service.session import db

log = logging.getLogger(__name__)
bp = APIBlueprint("results", __name__, url_prefix="/v1/jobs", abp_tags=[Tag(name="results")],
                  abp_security=[{"bearer": []}])


@bp.get("/<id>/metrics", summary="Loss curves and per-layer telemetry, as columns")
def get_metrics(path: IdPath, query: MetricsQuery):
    return polled(path.id, lambda session, job: _metrics(session, job, query))


def _metrics(session, job, query: MetricsQuery):
    head = {"job_id": job.id, "status": job.status}
    # A running job's columns come from this process's copy (None once it has finished)
    metrics = running_columns().read(session, job, query.since_epoch, query.max_points)
    if metrics is None:
        whole = query.since_epoch == 0 and query.max_points is None
        if query.format == "json" and whole and job.status in FINISHED_STATUSES:
            full = load_full_json(session, job)
            if full is not None:
                return _json(with_head(full, **head))
        metrics = read_columns(session, job, since_epoch=query.since_epoch,
                               max_points=query.max_points, archive=_archive(session, job))
    if query.format == "csv":
        return Response(metrics_csv(metrics), mimetype="text/csv")
    return _json(metrics_json(metrics, **head))


def _json(body: bytes) -> Response:
    return Response(body, mimetype="application/json")


def _archive(session, job):
    """The finished job's metric archive, written now if it has none (a job finished
    before archives existed, or by the reaper); a failed write still serves this read."""
    if job.status not in FINISHED_STATUSES:
        return None  # a running job is polled from its rows
    archive = ensure_archive(session, job)
    try:
        session.commit()
    except SQLAlchemyError:
        session.rollback()
        log.warning("could not store the metric archive of job %s", job.id, exc_info=True)
    return archive


@bp.get("/<id>/model", summary="Trained weights and biases (JSON, or .npz)",
        responses={200: None, 404: None, 409: None})
def get_model(path: IdPath, query: ModelQuery):
    session = db()
    job = submission.get_job(session, current_user_id(), path.id)
    model = results.load_model(session, job)
    if query.format == "npz":
        return Response(model.to_bytes(), mimetype="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{job.id}.npz"'})
    return results.model_to_dict(job, model)


@bp.post("/<id>/predict", summary="Predict with the trained model",
         responses={200: None, 404: None, 409: None, 422: None})
def predict(path: IdPath, body: PredictBody):
    session = db()
    job = submission.get_job(session, current_user_id(), path.id)
    return results.predict(job, results.load_model(session, job), body.X)
