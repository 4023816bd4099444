"""POST/GET /v1/jobs and cancellation."""
from __future__ import annotations

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from jobs import submission
from jobs.job_views import job_detail, job_to_dict
from service.auth import current_user_id
from service.poll_cache import polled
from service.queue import publish_job
from service.schemas import IdempotencyHeader, IdPath, JobCreate, JobListQuery
from service.session import db

bp = APIBlueprint("jobs", __name__, url_prefix="/v1/jobs", abp_tags=[Tag(name="jobs")],
                  abp_security=[{"bearer": []}])


@bp.post("", summary="Submit a training job", responses={202: None, 422: None, 429: None})
def create_job(body: JobCreate, header: IdempotencyHeader):
    session = db()
    job, created = submission.create_job(
        session, current_app.config["GRADTRACE"], owner_id=current_user_id(),
        dataset_id=body.dataset_id, name=body.name, raw_spec=body.raw_spec(),
        idempotency_key=header.idempotency_key)
    session.commit()
    if created:
        # After the commit: a worker that gets the message must find the row.
        publish_job(job.id)
    return job_to_dict(job), 202, {"Location": f"/v1/jobs/{job.id}"}


@bp.get("", summary="List your jobs, newest first")
def list_jobs(query: JobListQuery):
    page, cursor = submission.list_jobs(db(), current_user_id(), status=query.status,
                                        limit=query.limit, cursor=query.cursor)
    return {"items": [job_to_dict(j) for j in page], "next_cursor": cursor}


@bp.get("/<id>", summary="One job: status, progress, summary")
def get_job(path: IdPath):
    return polled(path.id, job_detail)


@bp.post("/<id>/cancel", summary="Cancel a job (409 if it already finished)",
         responses={202: None, 404: None, 409: None})
def cancel_job(path: IdPath):
    session = db()
    job = submission.request_cancel(session, current_user_id(), path.id)
    session.commit()
    return job_to_dict(job), 202
