"""What a job produced: metrics (JSON or CSV), the model, predictions."""
from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from jobs import results, submission
from jobs.metric_reader import metrics_csv, read_metrics
from service.auth import current_user_id
from service.schemas import IdPath, MetricsQuery, ModelQuery, PredictBody
from service.session import db

bp = APIBlueprint("results", __name__, url_prefix="/v1/jobs", abp_tags=[Tag(name="results")],
                  abp_security=[{"bearer": []}])


@bp.get("/<id>/metrics", summary="Loss curves and per-layer telemetry, as columns")
def get_metrics(path: IdPath, query: MetricsQuery):
    session = db()
    job = submission.get_job(session, current_user_id(), path.id)
    metrics = read_metrics(session, job, since_epoch=query.since_epoch,
                           max_points=query.max_points)
    if query.format == "csv":
        return Response(metrics_csv(metrics), mimetype="text/csv")
    return {"job_id": job.id, "status": job.status, **metrics}


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
