"""Response schemas for /openapi.json, so clients and the fuzzer can check every answer.

Success bodies are described by their required keys (extra keys are allowed, so adding a
field is not a breaking change); every error status answers the one error envelope.
"""
from __future__ import annotations

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

UUID = {"type": "string", "format": "uuid"}
TIME = {"type": ["string", "null"]}
JOB_STATUS = {"type": "string", "enum": ["queued", "running", "cancelling", "cancelled",
                                         "succeeded", "failed"]}


def _obj(required: dict, **optional) -> dict:
    return {"type": "object", "required": list(required),
            "properties": {**required, **optional}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _items(name: str, **extra) -> dict:
    return _obj({"items": {"type": "array", "items": _ref(name)}, **extra})


SCHEMAS = {
    "Error": ERROR_SCHEMA,
    "Dataset": _obj({"id": UUID, "name": {"type": "string"}, "n_samples": {"type": "integer"},
                     "n_features": {"type": "integer"}, "n_outputs": {"type": "integer"},
                     "task": {"type": "string"}, "sha256": {"type": "string"},
                     "size_bytes": {"type": "integer"}, "source": {"type": "string"}}),
    "Job": _obj({"id": UUID, "status": JOB_STATUS, "spec": {"type": "object"},
                 "progress": _obj({"epoch": {"type": "integer"},
                                   "epochs": {"type": "integer"}}),
                 "created_at": TIME, "attempts": {"type": "integer"},
                 "cancel_requested": {"type": "boolean"}},
                dataset_id={"type": ["string", "null"]}, error={"type": ["string", "null"]}),
    "User": _obj({"id": UUID, "name": {"type": "string"}, "is_admin": {"type": "boolean"}}),
    "Token": _obj({"id": UUID, "user_id": UUID, "label": {"type": "string"},
                   "expires_at": TIME, "revoked_at": TIME, "active": {"type": "boolean"}}),
}
SCHEMAS["AdminJob"] = {"allOf": [_ref("Job"), _obj({"owner_id": UUID})]}
SCHEMAS["NewToken"] = {"allOf": [_ref("Token"),
                                 _obj({"token": {"type": "string"}, "user": _ref("User")})]}

JSON = "application/json"
# (method, path) -> {status: {media type: schema}} for the routes of this package.
SUCCESS = {
    ("get", "/health"): {"200": {JSON: _obj({"status": {"const": "ok"}})}},
    ("get", "/ready"): {status: {JSON: _obj({"status": {"type": "string"},
                                             "checks": {"type": "object"}})}
                        for status in ("200", "503")},
    ("get", "/v1/datasets"): {"200": {JSON: _items("Dataset")}},
    ("post", "/v1/datasets"): {"201": {JSON: _ref("Dataset")}},
    ("get", "/v1/datasets/{id}"): {"200": {JSON: _ref("Dataset")}},
    ("delete", "/v1/datasets/{id}"): {"204": {}},
    ("get", "/v1/jobs"): {"200": {JSON: _items("Job",
                                               next_cursor={"type": ["string", "null"]})}},
    ("post", "/v1/jobs"): {"202": {JSON: _ref("Job")}},
    ("get", "/v1/jobs/{id}"): {"200": {JSON: _ref("Job")}},
    ("post", "/v1/jobs/{id}/cancel"): {"202": {JSON: _ref("Job")}},
    ("get", "/v1/jobs/{id}/metrics"): {"200": {
        JSON: _obj({"job_id": UUID, "status": JOB_STATUS}), "text/csv": {"type": "string"}}},
    ("get", "/v1/jobs/{id}/model"): {"200": {
        JSON: {"type": "object"}, "application/octet-stream": {"type": "string"}}},
    ("post", "/v1/jobs/{id}/predict"): {"200": {JSON: {"type": "object"}}},
    ("get", "/v1/admin/users"): {"200": {JSON: _items("User")}},
    ("get", "/v1/admin/tokens"): {"200": {JSON: _items("Token")}},
    ("post", "/v1/admin/tokens"): {"201": {JSON: _ref("NewToken")}},
    ("post", "/v1/admin/tokens/{id}/revoke"): {"200": {JSON: _ref("Token")}},
    ("get", "/v1/admin/jobs"): {"200": {JSON: _items("AdminJob")}},
}
# Headers that a status always carries.
HEADERS = {
    "201": {"Location": {"schema": {"type": "string"}}},
    "429": {"Retry-After": {"required": True, "schema": {"type": "string"}}},
}
DESCRIPTIONS = {"200": "OK", "201": "Created", "202": "Accepted", "204": "No Content",
                "400": "Malformed request (bad JSON, a non-finite number)",
                "401": "Missing, unknown, expired or revoked bearer token",
                "403": "The route needs the admin role", "404": "Not found (or not yours)",
                "405": "Method not allowed", "409": "Conflict with the resource's state",
                "413": "Over a size limit (the body, a dataset)",
                "415": "Unsupported content type", "422": "Invalid input",
                "429": "Over a rate limit or quota", "503": "A dependency is unavailable"}
