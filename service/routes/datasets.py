"""POST/GET/DELETE /v1/datasets: JSON arrays, a built-in toy set, or a CSV/.npz upload.

An upload never sits in memory whole: Werkzeug spools the file part to a temporary file,
the parser reads it in blocks into the storage scratch folder, and the stored blob is
written and hashed there before it is renamed into place (jobs/storage.py).
"""
from __future__ import annotations

from pathlib import Path

from flask import current_app, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import ValidationError

from jobs import datasets
from jobs.storage import BlobStore
from service.auth import current_user_id
from service.errors import ApiError, validation_error_response
from service.schemas import DatasetArrays, DatasetBuiltin, DatasetUpload, IdPath, PageQuery
from service.session import db

bp = APIBlueprint("datasets", __name__, url_prefix="/v1/datasets",
                  abp_tags=[Tag(name="datasets")], abp_security=[{"bearer": []}])

CREATE_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"oneOf": [
        {"$ref": "#/components/schemas/DatasetArrays"},
        {"$ref": "#/components/schemas/DatasetBuiltin"}]}},
    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/DatasetUpload"}}}}}


def _settings():
    return current_app.config["GRADTRACE"]


def _store() -> BlobStore:
    return BlobStore(_settings().storage_dir)


@bp.post("", summary="Create a dataset", openapi_extensions=CREATE_DOC,
         responses={201: None, 413: None, 415: None, 422: None})
def create_dataset():
    store = _store()
    with store.scratch() as scratch:
        try:
            name, parsed, source = _parse_request(scratch)
        except ValidationError as exc:
            return validation_error_response(exc)
        session = db()
        row = datasets.create_dataset(session, store, owner_id=current_user_id(), name=name,
                                      parsed=parsed, source=source, scratch=scratch,
                                      max_storage_bytes=_settings().max_storage_bytes_per_user)
        session.commit()
    return datasets.dataset_to_dict(row), 201, {"Location": f"/v1/datasets/{row.id}"}


def _parse_request(scratch: Path):
    if request.mimetype == "multipart/form-data":
        return _parse_upload(scratch)
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       "send application/json or multipart/form-data")
    body = request.get_json()
    if isinstance(body, dict) and "builtin" in body:
        spec = DatasetBuiltin.model_validate(body)
        parsed = datasets.parse_builtin(spec.builtin, n_samples=spec.n_samples,
                                        noise=spec.noise, seed=spec.seed,
                                        max_cells=_settings().max_dataset_cells)
        return spec.name, parsed, "builtin"
    spec = DatasetArrays.model_validate(body)
    return spec.name, datasets.parse_json(spec.X, spec.y, task=spec.task,
                                          max_cells=_settings().max_dataset_cells), "json"


def _parse_upload(scratch: Path):
    form = DatasetUpload.model_validate({**request.form.to_dict(),
                                         "file": request.files.get("file")})
    upload = form.file
    if upload is None or not hasattr(upload, "stream"):
        raise ApiError(422, "invalid", "a file is required", [("file", "missing")])
    max_cells = _settings().max_dataset_cells
    filename = (upload.filename or "").lower()
    if filename.endswith(".npz"):
        return form.name, datasets.parse_npz(upload.stream, task=form.task,
                                             max_cells=max_cells, scratch=scratch), "npz"
    if not form.target:
        raise ApiError(422, "invalid", "a CSV upload needs the form field 'target'",
                       [("target", "missing")])
    return form.name, datasets.parse_csv(upload.stream, form.target, task=form.task,
                                         max_cells=max_cells, scratch=scratch), "csv"


@bp.get("", summary="List your datasets")
def list_datasets(query: PageQuery):
    rows = datasets.list_datasets(db(), current_user_id(), limit=query.limit,
                                  offset=query.offset)
    return {"items": [datasets.dataset_to_dict(r) for r in rows]}


@bp.get("/<id>", summary="One dataset")
def get_dataset(path: IdPath):
    return datasets.dataset_to_dict(datasets.get_dataset(db(), current_user_id(), path.id))


@bp.delete("/<id>", summary="Delete a dataset (409 while a job uses it)",
           responses={204: None, 404: None, 409: None})
def delete_dataset(path: IdPath):
    session = db()
    datasets.delete_dataset(session, _store(), current_user_id(), path.id)
    session.commit()
    return "", 204
