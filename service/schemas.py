"""Request models. Strict: unknown fields are refused with 422 naming them.

The engine's spec sections are typed loosely here and validated by `mlp.validate_spec`,
which owns the rules; their documented JSON Schema comes from `mlp.spec_json_schema()`.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SPEC_SECTIONS = ("network", "loss", "optimizer", "training", "record", "diagnostics")
Name = Field(default="", max_length=200)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetArrays(Strict):
    name: str = Field(min_length=1, max_length=200)
    X: list[list[Any]] = Field(min_length=1)
    y: list[Any] = Field(min_length=1)
    task: Literal["classification", "regression"] | None = None


class DatasetBuiltin(Strict):
    name: str = Field(min_length=1, max_length=200)
    builtin: Literal["xor", "moons", "circles", "spirals", "blobs"]
    n_samples: int = Field(200, ge=4, le=1_000_000)
    noise: float = Field(0.1, ge=0.0, le=10.0)
    seed: int = Field(0, ge=0, le=2**32 - 1)


class DatasetUpload(BaseModel):
    """Multipart form: a CSV (with `target`) or an .npz with arrays X and y."""

    name: str = Field(min_length=1, max_length=200)
    file: Any = Field(json_schema_extra={"type": "string", "format": "binary"})
    target: str | None = Field(None, max_length=200)
    task: Literal["classification", "regression"] | None = None


class IdPath(Strict):
    id: str = Field(max_length=64)


class PageQuery(Strict):
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=1_000_000)


class JobListQuery(Strict):
    status: Literal["queued", "running", "cancelling", "cancelled", "succeeded",
                    "failed"] | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=400)


class JobCreate(Strict):
    dataset_id: str = Field(max_length=64)
    name: str = Name
    network: dict[str, Any]
    loss: Any = None
    optimizer: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    diagnostics: dict[str, Any] | None = None

    def raw_spec(self) -> dict:
        return {k: getattr(self, k) for k in SPEC_SECTIONS if k in self.model_fields_set}


class IdempotencyHeader(BaseModel):
    idempotency_key: str | None = Field(None, alias="Idempotency-Key", min_length=1,
                                        max_length=200)


class MetricsQuery(Strict):
    since_epoch: int = Field(0, ge=0, le=10**9)
    max_points: int | None = Field(None, ge=2, le=1_000_000)
    format: Literal["json", "csv"] = "json"


class ModelQuery(Strict):
    format: Literal["json", "npz"] = "json"


class PredictBody(Strict):
    X: list[list[float]] = Field(min_length=1, max_length=10_000)
