"""The OpenAPI 3.1 document at /openapi.json, completed with the engine's spec schema."""
from __future__ import annotations

import copy

from flask import jsonify
from flask_openapi3 import OpenAPI

import mlp
from service.schemas import SPEC_SECTIONS, DatasetArrays, DatasetBuiltin, DatasetUpload

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "details"],
                             "properties": {
                                 "code": {"type": "string"},
                                 "message": {"type": "string"},
                                 "details": {"type": "array", "items": {
                                     "type": "object",
                                     "properties": {"field": {"type": ["string", "null"]},
                                                    "message": {"type": "string"}}}}}}},
}


def build_document(app: OpenAPI) -> dict:
    doc = copy.deepcopy(app.api_doc)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for model in (DatasetArrays, DatasetBuiltin, DatasetUpload):
        schemas[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}")
    spec_schema = mlp.spec_json_schema()
    job_create = schemas.get("JobCreate")
    if job_create is not None:
        for section in SPEC_SECTIONS:
            if section in spec_schema.get("properties", {}):
                job_create["properties"][section] = spec_schema["properties"][section]
    return doc


def finish_openapi(app: OpenAPI) -> None:
    cache: dict = {}

    def openapi_json():
        if "doc" not in cache:
            cache["doc"] = build_document(app)
        return jsonify(cache["doc"])

    app.add_url_rule("/openapi.json", "openapi_json", openapi_json)
