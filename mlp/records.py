"""Telemetry records emitted per recorded epoch, and the result of a fit.

A record's per-layer telemetry arrives as ``LayerSums``: the epoch's raw sums in one
float64 array, turned into ``LayerRecord``s only when read. Building a handful of
records costs a tiny network's epoch more than its training step, and most records are
read in bulk (the worker stores hundreds at once through ``layer_table``) or not at all.
"""
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from operator import attrgetter

import numpy as np

# LayerRecord's value fields, in order: the columns of ``layer_table``.
LAYER_FIELDS = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "weight_norm",
                "update_ratio", "dead_fraction", "saturated_fraction")


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


class LayerLayout:
    """Where each layer's values sit in a ``LayerSums`` array, for one network.

    The array is [Σ_steps ‖∂W‖, ‖∂b‖ per layer (2L) | Σ ‖δ‖ (L) | Σ update ratio (L) |
    Σ saturated counts (L) | ‖W‖², ‖b‖² at epoch end (2L) | dead units per relu-family
    layer (R)]; ``steps`` and ``seen`` (samples) divide the sums.
    """

    def __init__(self, dead_units, saturates):
        """``dead_units[l]``: layer l's unit count if dead units are tracked, else None;
        ``saturates[l]``: whether layer l counts saturated units."""
        self.depth = L = len(dead_units)
        self.dead_layers = [l for l, u in enumerate(dead_units) if u is not None]
        self.dead_units = np.array([dead_units[l] for l in self.dead_layers], np.float64)
        self.sat_layers = [l for l, s in enumerate(saturates) if s]
        self.width = 7 * L + len(self.dead_layers)

    def table(self, raw, steps, seen):
        """Return the (E, L, 7) values (LAYER_FIELDS order, NaN where a field does not
        apply) of E epochs' raw arrays (E, width), step counts and sample counts (E,)."""
        L, E = self.depth, len(raw)
        out = np.full((E, L, len(LAYER_FIELDS)), np.nan)
        sums = raw[:, :4 * L] / np.maximum(steps, 1)[:, None]
        out[:, :, 0], out[:, :, 1] = sums[:, 0:2 * L:2], sums[:, 1:2 * L:2]
        out[:, :, 2], out[:, :, 4] = sums[:, 2 * L:3 * L], sums[:, 3 * L:4 * L]
        out[:, :, 3] = np.sqrt(raw[:, 5 * L:7 * L:2])
        if self.dead_layers:
            out[:, self.dead_layers, 5] = raw[:, 7 * L:] / self.dead_units
        if self.sat_layers:
            sat = [4 * L + l for l in self.sat_layers]
            out[:, self.sat_layers, 6] = raw[:, sat] / np.maximum(seen, 1)[:, None]
        return out


class LayerSums(Sequence):
    """One epoch's per-layer telemetry, raw; a read-only sequence of ``LayerRecord``s
    built on first access (and equal to the list of them)."""

    __slots__ = ("raw", "layout", "steps", "seen", "_records")

    def __init__(self, raw, layout, steps, seen):
        self.raw, self.layout, self.steps, self.seen = raw, layout, steps, seen
        self._records = None

    def records(self):
        if self._records is None:
            rows = self.layout.table(self.raw[None], np.array([self.steps]), np.array([self.seen]))[0]
            dead, sat = set(self.layout.dead_layers), set(self.layout.sat_layers)
            self._records = [LayerRecord(l + 1, *row[:5], row[5] if l in dead else None,
                                         row[6] if l in sat else None)
                             for l, row in enumerate(rows.tolist())]
        return self._records

    def __getitem__(self, i):
        return self.records()[i]

    def __len__(self):
        return self.layout.depth

    def __eq__(self, other):
        if isinstance(other, (list, tuple, LayerSums)):
            return self.records() == list(other)
        return NotImplemented

    def __repr__(self):
        return repr(self.records())


def layer_table(records):
    """Return the layers of ``records`` as an (Σ layers, 8) float64 array: the layer
    number, then LAYER_FIELDS (NaN for None). One numpy pass when the records' layers
    are LayerSums of one network."""
    layers = [r.layers for r in records]
    layout = layers[0].layout if layers and isinstance(layers[0], LayerSums) else None
    if layout is not None and all(isinstance(s, LayerSums) and s.layout is layout for s in layers):
        raw = np.stack([s.raw for s in layers])
        steps, seen = np.array(list(map(attrgetter("steps", "seen"), layers))).T.reshape(2, -1)
        values = layout.table(raw, steps, seen).reshape(-1, len(LAYER_FIELDS))
        numbers = np.tile(np.arange(1.0, layout.depth + 1), len(layers))
        return np.column_stack((numbers, values))
    rows = [[layer.layer] + [getattr(layer, f) for f in LAYER_FIELDS] for s in layers for layer in s]
    return np.array(rows, dtype=np.float64).reshape(-1, 1 + len(LAYER_FIELDS))


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
    layers: Sequence = field(default_factory=list)  # of LayerRecord (often a LayerSums)

    def to_dict(self):
        """Return a JSON-safe dict (floats, ints, None and lists only)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "layers"}
        out["layers"] = [asdict(layer) for layer in self.layers]
        return out


@dataclass
class FitResult:
    """Outcome of ``Trainer.fit``; ``epochs_run`` counts all epochs completed so far."""

    epochs_run: int
    stopped: bool
    early_stopped: bool
    best_epoch: int | None
    best_val_loss: float | None
    final: EpochRecord | None
