"""The OpenAPI 3.1 document at /openapi.json, completed with the engine's spec schema,
response schemas, the error statuses every route can answer, and links for stateful
clients (and the fuzzer): what a POST creates can be read, cancelled or deleted.
"""
from __future__ import annotations

import copy
import re

from flask import jsonify
from flask_openapi3 import OpenAPI

import mlp
from service.openapi_responses import DESCRIPTIONS, HEADERS, SCHEMAS, SUCCESS
from service.schemas import SPEC_SECTIONS, DatasetArrays, DatasetBuiltin, DatasetUpload

ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
BODY_METHODS = ("post", "put", "patch")
# What a client sees of one server-sent event (schemas apply per event).
SSE_EVENT = {"type": "object", "required": ["data"],
             "properties": {"event": {"type": "string"}, "data": {"type": "string"},
                            "id": {"type": "string"}}}
# Collections whose POST creates a resource answering with its `id`.
CREATORS = ("/v1/datasets", "/v1/jobs", "/v1/sweeps", "/v1/admin/tokens")


def build_document(app: OpenAPI) -> dict:
    doc = copy.deepcopy(app.api_doc)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(copy.deepcopy(SCHEMAS))
    schemas.pop("ValidationErrorModel", None)
    for model in (DatasetArrays, DatasetBuiltin, DatasetUpload):
        schemas[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}")
    spec_schema = mlp.spec_json_schema()
    job_create = schemas.get("JobCreate")
    if job_create is not None:
        for section in SPEC_SECTIONS:
            if section in spec_schema.get("properties", {}):
                job_create["properties"][section] = spec_schema["properties"][section]
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            _complete_operation(path, method, operation)
    _add_links(doc)
    return doc


def _complete_operation(path: str, method: str, operation: dict) -> None:
    """Ids are UUIDs; every status the service can answer is listed with its body."""
    for param in operation.get("parameters", []):
        if param.get("in") == "path" and (param["name"] == "id" or param["name"].endswith("_id")):
            param["schema"] = {"type": "string", "format": "uuid"}
        elif param.get("in") in ("query", "header"):
            param["schema"] = _without_null(param.get("schema", {}))
    responses = operation.setdefault("responses", {})
    for response in responses.values():
        if "text/event-stream" in response.get("content", {}):
            response["content"]["text/event-stream"] = {"schema": SSE_EVENT}
    for status, content in SUCCESS.get((method, path), {}).items():
        responses[status] = {"description": DESCRIPTIONS[status]}
        if content:
            responses[status]["content"] = {mt: {"schema": s} for mt, s in content.items()}
    if not any(s.startswith("2") for s in responses):
        responses["200"] = {"description": "OK", "content": {"application/json": {"schema": {}}}}
    for status in _error_statuses(path, method, operation):
        responses[status] = {"description": DESCRIPTIONS[status], "content": ERROR_CONTENT}
    for status, headers in HEADERS.items():
        if status in responses:
            responses[status]["headers"] = copy.deepcopy(headers)


def _without_null(schema: dict) -> dict:
    """An optional query or header parameter is absent, never `null`: HTTP has no null."""
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if len(options) != 1 or len(schema["anyOf"]) != 2:
        return schema
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}


def _error_statuses(path: str, method: str, operation: dict) -> set[str]:
    statuses = {s for s in operation.get("responses", {}) if s[0] in "45"} - {"503"}
    statuses.add("422")
    if path.startswith("/v1/"):
        statuses |= {"401", "429"}
    if path.startswith("/v1/admin/"):
        statuses.add("403")
    if "{" in path:
        statuses.add("404")
    if method in BODY_METHODS:
        statuses |= {"400", "413", "415"}
    return statuses


def _add_links(doc: dict) -> None:
    """Link each creating POST to every operation on the created resource (any route
    added later under `<collection>/{id}` is linked too); each id argument gets the id."""
    paths = doc.get("paths", {})
    for collection in CREATORS:
        post = paths.get(collection, {}).get("post")
        if post is None:
            continue
        status = next((s for s in sorted(post["responses"]) if s.startswith("2")), None)
        links = post["responses"][status].setdefault("links", {}) if status else {}
        for path, operations in paths.items():
            if not path.startswith(collection + "/{id}"):
                continue
            args = re.findall(r"\{([^}]+)\}", path)
            for operation in operations.values():
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": {f"path.{a}": "$response.body#/id" for a in args}}


def finish_openapi(app: OpenAPI) -> None:
    cache: dict = {}

    def openapi_json():
        if "doc" not in cache:
            cache["doc"] = build_document(app)
        return jsonify(cache["doc"])

    app.add_url_rule("/openapi.json", "openapi_json", openapi_json)
