"""Typed results of the Python client: plain dataclasses built from the API's JSON.

Unknown keys are ignored (a newer server may add fields); each object keeps the full
JSON it came from in `raw`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")

FINISHED = ("succeeded", "failed", "cancelled")


def from_json(cls: type[T], data: dict, **extra: Any) -> T:
    """Build `cls` from the keys of `data` it declares (plus `extra`), keeping `raw`."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in data.items() if k in names}
    values.update(extra)
    if "raw" in names:
        values["raw"] = data
    return cls(**values)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, bool]


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str
    n_samples: int
    n_features: int
    n_outputs: int
    task: str
    classes: list | None = None
    sha256: str = ""
    size_bytes: int = 0
    source: str = ""
    created_at: str | None = None
    raw: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    name: str = ""
    dataset_id: str | None = None
    spec: dict = field(default_factory=dict, repr=False)
    epoch: int = 0
    epochs: int = 0
    error: str | None = None
    summary: dict | None = None
    manifest: dict | None = field(default=None, repr=False)
    attempts: int = 0
    worker: str | None = None
    cancel_requested: bool = False
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: dict) -> Job:
        progress = data.get("progress") or {}
        return from_json(cls, data, epoch=progress.get("epoch", 0),
                         epochs=progress.get("epochs", 0))

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class JobPage:
    items: list[Job]
    next_cursor: str | None


@dataclass(frozen=True)
class Metrics:
    """Columns of recorded epochs; `layers` holds one dict of columns per layer."""

    job_id: str
    status: str
    epoch: list[int]
    train_loss: list[float | None]
    val_loss: list[float | None]
    train_accuracy: list[float | None]
    val_accuracy: list[float | None]
    learning_rate: list[float | None]
    layers: list[dict]
    nonfinite: bool = False

    def epoch_events(self) -> list[EpochEvent]:
        """The rows as EpochEvents, the shape the live stream delivers."""
        names = [f.name for f in fields(LayerStats) if f.name != "layer"]
        return [EpochEvent(epoch, self.train_loss[i], self.val_loss[i], self.train_accuracy[i],
                           self.val_accuracy[i], self.learning_rate[i],
                           [LayerStats(col["layer"], *(col[n][i] for n in names))
                            for col in self.layers])
                for i, epoch in enumerate(self.epoch)]


@dataclass(frozen=True)
class Prediction:
    predictions: list
    probabilities: list[list[float]] | None = None
    classes: list | None = None


@dataclass(frozen=True)
class LayerStats:
    layer: int
    weight_grad_norm: float | None
    bias_grad_norm: float | None
    delta_norm: float | None
    weight_norm: float | None
    update_ratio: float | None
    dead_fraction: float | None = None
    saturated_fraction: float | None = None


@dataclass(frozen=True)
class StatusEvent:
    status: str
    epoch: int
    epochs: int
    error: str | None
    id: int | None = None


@dataclass(frozen=True)
class EpochEvent:
    epoch: int
    train_loss: float | None
    val_loss: float | None
    train_accuracy: float | None
    val_accuracy: float | None
    learning_rate: float | None
    layers: list[LayerStats]
    id: int | None = None


@dataclass(frozen=True)
class DoneEvent:
    job: Job


Event = StatusEvent | EpochEvent | DoneEvent


def parse_event(kind: str, data: dict, event_id: int | None) -> Event | None:
    """A typed event from one SSE message; None for kinds this client does not know."""
    if kind == "status":
        return from_json(StatusEvent, data, id=event_id)
    if kind == "epoch":
        layers = [from_json(LayerStats, layer) for layer in data.get("layers", [])]
        return from_json(EpochEvent, data, layers=layers, id=event_id)
    if kind == "done":
        return DoneEvent(Job.parse(data))
    return None
