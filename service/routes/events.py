"""GET /v1/jobs/{id}/events: the job's live telemetry as server-sent events.

The polling lives in `jobs.event_feed`; this view checks ownership (404 before any byte
is streamed), reads Last-Event-ID and frames the events. The generator opens its own
short sessions, so the request's session and context can close as soon as headers go out;
under gunicorn's gthread workers each open stream holds one thread.
"""
from __future__ import annotations

from flask import Response, current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from jobs import event_feed, submission
from service.auth import current_user_id
from service.schemas import IdPath, OptionalTextInt
from service.session import db

bp = APIBlueprint("events", __name__, url_prefix="/v1/jobs", abp_tags=[Tag(name="events")],
                  abp_security=[{"bearer": []}])

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_DOC = {200: {"description": "text/event-stream: `status`, `epoch` (id = epoch) and a "
                                   "final `done` event; `: ping` comments keep it alive",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


class LastEventHeader(BaseModel):
    last_event_id: OptionalTextInt = Field(None, alias="Last-Event-ID", ge=0, le=10**9)


@bp.get("/<id>/events", summary="Live status and per-epoch telemetry (server-sent events)",
        responses={**STREAM_DOC, 404: None, 422: None})
def job_events(path: IdPath, header: LastEventHeader):
    owner_id = current_user_id()
    submission.get_job(db(), owner_id, path.id)
    settings = current_app.config["GRADTRACE"]
    timing = event_feed.FeedTiming(poll_s=settings.events_poll_s,
                                   keepalive_s=settings.events_keepalive_s,
                                   max_s=settings.events_max_s)
    feed = event_feed.follow(current_app.extensions["gradtrace_sessions"], owner_id, path.id,
                             last_epoch=header.last_event_id or 0, timing=timing)
    return Response((event.encode() for event in feed), mimetype="text/event-stream",
                    headers=STREAM_HEADERS)
