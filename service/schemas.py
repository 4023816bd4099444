"""Request models. Strict: unknown fields are refused with 422 naming them.

The engine's spec sections are typed loosely here and validated by `mlp.validate_spec`,
which owns the rules; their documented JSON Schema comes from `mlp.spec_json_schema()`.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

SPEC_SECTIONS = ("network", "loss", "optimizer", "training", "record", "diagnostics")
Name = Field(default="", max_length=200)


def _written_integer(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value):
        raise ValueError("expected an integer in decimal digits")
    return value


# An integer in a query string or header, as it is written there: pydantic alone would
# also read "+0.0", " 1" and "1_0" as integers, a silent coercion of malformed input.
# The optional one is its own type: `TextInt | None` would put a Field's bounds in the
# JSON Schema as raw "ge"/"le" instead of "minimum"/"maximum".
TextInt = Annotated[int, BeforeValidator(_written_integer)]
OptionalTextInt = Annotated[int | None, BeforeValidator(_written_integer)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def model_json_schema(cls, *args, **kwargs) -> Mapping[str, Any]:
        # flask-openapi3 regenerates a query model's whole JSON Schema on every request
        # (~1 ms) only to read its field types; the schema of a class never changes. It is
        # kept read-only rather than copied for each caller (a deep copy cost a polled
        # metrics request 0.2 ms, a quarter of its time).
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        cached = cls.__dict__.get("_plain_json_schema")
        if cached is None:
            cached = read_only(super().model_json_schema())
            type.__setattr__(cls, "_plain_json_schema", cached)
        return cached


def read_only(value: Any) -> Any:
    """`value` (JSON-like) with every dict a read-only mapping and every list a tuple."""
    if isinstance(value, dict):
        return MappingProxyType({k: read_only(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(read_only(v) for v in value)
    return value


class StrictBody(Strict):
    """A JSON body: no type coercion either (`false` is not the integer 0, "1" not 1).

    JSON Schema counts 3.0 as an integer, so an integral float is accepted for an `int`
    field (and becomes an int); anything else follows pydantic's strict mode.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        ints = {name for name, field in cls.model_fields.items()
                if field.annotation is int or field.annotation == int | None}
        return {k: int(v) if k in ints and type(v) is float and v.is_integer()
                and abs(v) < 2**63 else v for k, v in data.items()}


class DatasetArrays(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    X: list[list[Any]] = Field(min_length=1)
    y: list[Any] = Field(min_length=1)
    task: Literal["classification", "regression"] | None = None


class DatasetBuiltin(StrictBody):
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
    limit: TextInt = Field(50, ge=1, le=200)
    offset: TextInt = Field(0, ge=0, le=1_000_000)


class JobListQuery(Strict):
    status: Literal["waiting", "queued", "running", "cancelling", "cancelled", "succeeded",
                    "failed"] | None = None
    limit: TextInt = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=400)


class JobCreate(StrictBody):
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
    since_epoch: TextInt = Field(0, ge=0, le=10**9)
    max_points: OptionalTextInt = Field(None, ge=2, le=1_000_000)
    format: Literal["json", "csv"] = "json"


class ModelQuery(Strict):
    format: Literal["json", "npz"] = "json"


class PredictBody(StrictBody):
    X: list[list[float]] = Field(min_length=1, max_length=10_000)


# --- Admin routes (issue 6) --------------------------------------------------------------

class AdminPageQuery(Strict):
    limit: TextInt = Field(100, ge=1, le=1000)
    offset: TextInt = Field(0, ge=0, le=1_000_000)


class AdminTokenQuery(AdminPageQuery):
    user_id: str | None = Field(None, max_length=36)


class AdminJobQuery(Strict):
    owner_id: str | None = Field(None, max_length=36)
    status: Literal["queued", "running", "cancelling", "cancelled", "succeeded",
                    "failed"] | None = None
    limit: TextInt = Field(50, ge=1, le=200)
    offset: TextInt = Field(0, ge=0, le=1_000_000)


class AdminTokenCreate(StrictBody):
    """A token for a user (created if new, never with the admin role: that is CLI-only)."""

    # Plain identifiers only: a name is shown in logs and admin listings.
    user: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
    label: str = Field("", max_length=100)
    expires_in_days: float | None = Field(None, gt=0, le=3650)


# --- Sweeps (issue 7) ----------------------------------------------------------------------

class SweepSearch(StrictBody):
    """Parameter paths map to a list of values or a distribution; jobs.sweep_search
    checks both and names the offending path."""

    method: Literal["grid", "random"] = "grid"
    parameters: dict[str, Any] = Field(min_length=1, max_length=20)
    seed: int = Field(0, ge=0, le=2**32 - 1)


class SweepCreate(StrictBody):
    name: str = Name
    dataset_id: str = Field(max_length=64)
    base: dict[str, Any]
    search: SweepSearch
    max_trials: int | None = Field(None, ge=1, le=256)
    parallel_trials: int = Field(2, ge=1, le=64)
    metric: Literal["final_val_loss", "best_val_loss", "final_train_loss", "best_train_loss",
                    "final_val_accuracy", "final_train_accuracy",
                    "training_seconds"] = "final_val_loss"
    goal: Literal["minimize", "maximize"] | None = None
