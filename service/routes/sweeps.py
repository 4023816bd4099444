"""/v1/sweeps: hyper-parameter searches whose trials are ordinary jobs."""
from __future__ import annotations

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy.orm import Session

from jobs import sweep_views, sweeps
from jobs.models import Sweep
from service.auth import current_user_id
from service.queue import publish_job
from service.schemas import IdPath, PageQuery, SweepCreate
from service.session import db

bp = APIBlueprint("sweeps", __name__, url_prefix="/v1/sweeps", abp_tags=[Tag(name="sweeps")],
                  abp_security=[{"bearer": []}])


@bp.post("", summary="Start a grid or random search over a base spec",
         responses={202: None, 422: None, 429: None})
def create_sweep(body: SweepCreate):
    session = db()
    request = sweeps.SweepRequest(
        name=body.name, dataset_id=body.dataset_id, base=body.base,
        method=body.search.method, parameters=body.search.parameters, seed=body.search.seed,
        max_trials=body.max_trials, parallel_trials=body.parallel_trials,
        metric=body.metric, goal=body.goal)
    sweep, queued = sweeps.create_sweep(session, current_app.config["GRADTRACE"],
                                        current_user_id(), request)
    session.commit()
    # After the commit: a worker that gets a message must find the row.
    for job_id in queued:
        publish_job(job_id)
    return _view(session, sweep), 202, {"Location": f"/v1/sweeps/{sweep.id}"}


@bp.get("", summary="List your sweeps, newest first, with trial counts by status")
def list_sweeps(query: PageQuery):
    return {"items": sweep_views.list_sweeps(db(), current_user_id(), limit=query.limit,
                                             offset=query.offset)}


@bp.get("/<id>", summary="One sweep: trials ranked by its metric, with their parameters")
def get_sweep(path: IdPath):
    session = db()
    sweep = sweeps.get_sweep(session, current_user_id(), path.id)
    return _view(session, sweep)


@bp.post("/<id>/cancel", summary="Cancel every unfinished trial (409 if none is left)",
         responses={202: None, 404: None, 409: None})
def cancel_sweep(path: IdPath):
    session = db()
    sweep = sweeps.cancel_sweep(session, current_user_id(), path.id)
    session.commit()
    return _view(session, sweep), 202


@bp.delete("/<id>", summary="Forget a finished sweep; its trials stay as jobs",
           responses={204: None, 404: None, 409: None})
def delete_sweep(path: IdPath):
    session = db()
    sweeps.delete_sweep(session, current_user_id(), path.id)
    session.commit()
    return "", 204


def _view(session: Session, sweep: Sweep) -> dict:
    return sweep_views.sweep_to_dict(sweep, sweeps.trials_of(session, sweep))
