"""The application factory: nothing happens at import time."""
from __future__ import annotations

from flask import redirect, request
from flask_openapi3 import Info, OpenAPI

from jobs.settings import Settings
from service.auth import require_user
from service.errors import ApiError, register_error_handlers, validation_error_response
from service.jsonio import StrictJSONProvider, strict_loads
from service.openapi_doc import finish_openapi
from service.queue import init_queue
from service.session import init_db

BODY_METHODS = ("POST", "PUT", "PATCH")


def create_app(settings: Settings | None = None) -> OpenAPI:
    settings = settings or Settings.from_env()
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
                      MAX_FORM_MEMORY_SIZE=settings.max_request_bytes, MAX_FORM_PARTS=20)
    init_db(app)
    init_queue(app, settings)
    register_error_handlers(app)
    app.before_request(_parse_json_body)
    app.before_request(require_user)
    _register_blueprints(app)
    finish_openapi(app)
    app.add_url_rule("/docs", "docs_index", lambda: redirect("/docs/swagger"))
    return app


def _register_blueprints(app: OpenAPI) -> None:
    from service.routes import datasets, health, jobs, results

    for module in (health, datasets, jobs, results):
        app.register_api(module.bp)


def _parse_json_body() -> None:
    """Refuse malformed or non-JSON bodies with 400/415 before validation sees them."""
    if request.method not in BODY_METHODS or not request.path.startswith("/v1/"):
        return
    if request.mimetype == "multipart/form-data" and request.path == "/v1/datasets":
        return
    if not request.content_length and not request.get_data(cache=True):
        if request.path.endswith("/cancel"):
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
