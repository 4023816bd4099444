"""The application factory: nothing happens at import time."""
from __future__ import annotations

import re

from flask import current_app, redirect, request
from flask_openapi3 import Info, OpenAPI

from jobs.settings import Settings
from service.auth import require_user
from service.errors import ApiError, register_error_handlers, validation_error_response
from service.hardening import (check_deployment_settings, init_hardening,
                               refuse_oversized_stream)
from service.jsonio import StrictJSONProvider, strict_loads
from service.openapi_doc import finish_openapi
from service.metric_columns import init_metric_columns
from service.poll_cache import init_poll_cache
from service.queue import init_queue
from service.ratelimit import init_rate_limit
from service.session import init_db

BODY_METHODS = ("POST", "PUT", "PATCH")


def create_app(settings: Settings | None = None) -> OpenAPI:
    settings = settings or Settings.from_env()
    check_deployment_settings(settings)
    app = OpenAPI(
        "gradtrace",
        info=Info(title="gradtrace", version="1",
                  description="Train MLPs and watch the back-propagated error, layer by layer."),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        validation_error_status=422,
        validation_error_callback=validation_error_response,
        doc_prefix="/docs",
    )
    app.json = StrictJSONProvider(app)
    app.config.update(GRADTRACE=settings, DEBUG=False, PROPAGATE_EXCEPTIONS=False,
                      MAX_CONTENT_LENGTH=settings.max_request_bytes,
                      MAX_FORM_MEMORY_SIZE=settings.max_request_bytes,
                      MAX_FORM_PARTS=settings.max_form_parts)
    init_db(app)
    init_queue(app, settings)
    register_error_handlers(app)
    # Authenticate first: a stranger's body is not even parsed.
    app.before_request(require_user)
    app.before_request(refuse_oversized_stream)
    app.before_request(_parse_json_body)
    init_rate_limit(app)  # after require_user: the limit is keyed by the user
    init_poll_cache(app)
    init_metric_columns(app)
    init_hardening(app)
    _register_blueprints(app)
    finish_openapi(app)
    app.add_url_rule("/docs", "docs_index", lambda: redirect("/docs/swagger"))
    return app


def _register_blueprints(app: OpenAPI) -> None:
    from service.routes import (admin, backprop, dashboard, datasets, events, health, jobs,
                                plots, results, sweeps, trace_page)

    for module in (health, datasets, jobs, results, events, plots, sweeps, backprop, admin):
        app.register_api(module.bp)
    # The HTML pages are plain blueprints: they are not part of the API document.
    for module in (dashboard, trace_page):
        app.register_blueprint(module.bp)


def _parse_json_body() -> None:
    """Refuse malformed or non-JSON bodies with 400/415 before validation sees them."""
    if request.method not in BODY_METHODS or not request.path.startswith("/v1/"):
        return
    if request.mimetype == "multipart/form-data" and request.path == "/v1/datasets":
        return
    if not request.content_length and not request.get_data(cache=True):
        if not _expects_body():
            return
        raise ApiError(400, "bad_request", "the request body is empty")
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"send application/json, not {request.mimetype or 'no content type'}")
    try:
        body = strict_loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    request._cached_json = (body, body)


def _expects_body() -> bool:
    """Whether the matched operation declares a request body in the OpenAPI document."""
    bodies = current_app.extensions.get("gradtrace_body_operations")
    if bodies is None:
        bodies = current_app.extensions["gradtrace_body_operations"] = {
            (path, method) for path, ops in current_app.api_doc.get("paths", {}).items()
            for method, op in ops.items() if isinstance(op, dict) and "requestBody" in op}
    rule = request.url_rule.rule if request.url_rule else ""
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)
    return (path, request.method.lower()) in bodies
