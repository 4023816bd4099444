"""Telemetry records emitted per recorded epoch, and the result of a fit."""
from dataclasses import asdict, dataclass, field


@dataclass
class LayerRecord:
    """Per-layer telemetry for one epoch (definitions in docs/engine.md)."""

    layer: int
    weight_grad_norm: float
    bias_grad_norm: float
    delta_norm: float
    weight_norm: float
    update_ratio: float
    dead_fraction: float | None = None
    saturated_fraction: float | None = None


@dataclass
class EpochRecord:
    """Metrics of one epoch; ``seconds`` is wall clock and excluded from determinism."""

    epoch: int
    train_loss: float
    val_loss: float | None
    train_accuracy: float | None
    val_accuracy: float | None
    learning_rate: float
    seconds: float
    layers: list = field(default_factory=list)

    def to_dict(self):
        """Return a JSON-safe dict (floats, ints, None and lists only)."""
        return asdict(self)


@dataclass
class FitResult:
    """Outcome of ``Trainer.fit``; ``epochs_run`` counts all epochs completed so far."""

    epochs_run: int
    stopped: bool
    early_stopped: bool
    best_epoch: int | None
    best_val_loss: float | None
    final: EpochRecord | None
