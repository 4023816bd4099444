"""Looking inside a job's network: gradient check and per-sample trace on stored weights.

The weights are the job's final model, or its latest checkpoint (the only one kept) for
a job still running or stopped; asking for another epoch is answered with the epochs
that are available. Functions take a session and never commit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

import mlp
from jobs.artifacts import MODEL, load_artifact
from jobs.checkpoint_store import CheckpointStore
from jobs.datasets import load_arrays
from jobs.errors import Conflict, InvalidInput, LimitExceeded, NotFound
from jobs.models import Dataset, Job
from jobs.settings import Settings
from jobs.storage import BlobStore
from mlp.trace import describe

# Finite differences cost two forward passes per parameter: this bounds a request to
# about a second of CPU (docs/diagnosis.md has the measurement).
MAX_GRADCHECK_PARAMETERS = 10_000
MAX_TRACE_ROWS = 16
# Arrays up to this size come in full: a 16-row trace of 64-unit layers, enough to draw.
TRACE_MAX_FULL = 1024


@dataclass
class Weights:
    model: mlp.Model
    epoch: int
    source: str  # "model" (final) or "checkpoint"


@dataclass
class JobData:
    X: np.ndarray
    y: np.ndarray
    n_classes: int | None


def job_data(session: Session, settings: Settings, job: Job) -> JobData:
    """The job's dataset arrays; Conflict when the dataset was deleted since."""
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
    if dataset is None:
        raise Conflict(f"the dataset of job {job.id} was deleted",
                       [("dataset_id", "the job's dataset no longer exists")])
    X, y = load_arrays(BlobStore(settings.storage_dir), dataset)
    return JobData(X, y, dataset.n_outputs if dataset.task == "classification" else None)


def stored_weights(session: Session, settings: Settings, job: Job, epoch: int | None) -> Weights:
    """The final model (or, without one, the latest checkpoint); or those of `epoch`."""
    found = []
    artifact = load_artifact(session, job.id, MODEL)
    if artifact is not None:
        found.append(Weights(mlp.Model.from_bytes(artifact.data), artifact.epoch, "model"))
    if artifact is None or (epoch is not None and epoch != artifact.epoch):
        checkpoint = CheckpointStore(settings).load(session, job)
        if checkpoint is not None:
            data = job_data(session, settings, job)
            trainer = mlp.Trainer.from_state(job.spec, data.X, data.y, checkpoint.data,
                                             n_classes=data.n_classes)
            found.append(Weights(trainer.model(), trainer.epoch, "checkpoint"))
    if not found:
        raise Conflict(f"job {job.id} has no stored weights yet (status {job.status})")
    if epoch is None:
        return found[0]
    match = next((w for w in found if w.epoch == epoch), None)
    if match is None:
        kept = ", ".join(f"{w.epoch} ({w.source})" for w in found)
        raise NotFound(f"no stored weights for epoch {epoch} of job {job.id}",
                       [("epoch", f"weights are kept for epochs: {kept}")])
    return match


def parameter_count(job: Job) -> int:
    fan_in, total = (job.manifest or {})["n_features"], 0
    for layer in job.spec["network"]["layers"]:
        total += (fan_in + 1) * layer["units"]
        fan_in = layer["units"]
    return total


def gradcheck_job(session: Session, settings: Settings, job: Job, *, epoch: int | None,
                  samples: int) -> dict:
    """Backprop against finite differences on the first `samples` rows of the job's data."""
    count = parameter_count(job)
    if count > MAX_GRADCHECK_PARAMETERS:
        raise LimitExceeded("max_gradcheck_parameters", MAX_GRADCHECK_PARAMETERS,
                            f"the network has {count} parameters; a gradient check on request "
                            f"is limited to {MAX_GRADCHECK_PARAMETERS} (2 forward passes each)",
                            field="job")
    weights = stored_weights(session, settings, job, epoch)
    data = job_data(session, settings, job)
    result = mlp.gradient_check(job.spec, data.X, data.y, n_classes=data.n_classes,
                                samples=samples, weights=weights.model)
    return {"job_id": job.id, "epoch": weights.epoch, "weights": weights.source, **result}


def trace_job(session: Session, settings: Settings, job: Job, *, X: list[list[float]],
              y: list, epoch: int | None) -> dict:
    """Every layer's z, a, δ, ∂L/∂W and ∂L/∂b for rows X with targets y."""
    weights = stored_weights(session, settings, job, epoch)
    model = weights.model
    inputs = _trace_inputs(model, X, y)
    targets = _targets(job, model, y)
    result = mlp.trace(model, inputs, targets, loss=model.loss, n_classes=model.n_classes,
                       max_full=TRACE_MAX_FULL)
    # The weights themselves, so a reader can redo zˡ = aˡ⁻¹Wˡ + bˡ with the numbers.
    parameters = [{"layer": i + 1, "W": describe(W, TRACE_MAX_FULL),
                   "b": describe(b, TRACE_MAX_FULL)}
                  for i, (W, b) in enumerate(model.layers)]
    return {"job_id": job.id, "epoch": weights.epoch, "weights": weights.source,
            "loss_function": model.loss, "classes": (job.manifest or {}).get("classes"),
            "parameters": parameters, **result}


def _trace_inputs(model: mlp.Model, X: list[list[float]], y: list) -> np.ndarray:
    n_features = model.layers[0][0].shape[0]
    if not 1 <= len(X) <= MAX_TRACE_ROWS:
        raise InvalidInput(f"X must have 1 to {MAX_TRACE_ROWS} rows",
                           [("X", f"has {len(X)} rows")])
    bad = next((i for i, row in enumerate(X) if len(row) != n_features), None)
    if bad is not None:
        raise InvalidInput(f"X must have {n_features} columns per row",
                           [(f"X[{bad}]", f"has {len(X[bad])} values; expected {n_features}")])
    if len(y) != len(X):
        raise InvalidInput("y must have one target per row of X",
                           [("y", f"has {len(y)} targets for {len(X)} rows")])
    return np.asarray(X, dtype=np.float64)


def _targets(job: Job, model: mlp.Model, y: list) -> np.ndarray:
    """Class labels become class indices; regression targets stay numbers."""
    classes = (job.manifest or {}).get("classes")
    if model.n_classes is None:
        return _regression_targets(model, y)
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for i, label in enumerate(y):
        key = _label_text(label)
        if key not in index:
            raise InvalidInput("unknown class label",
                               [(f"y[{i}]", f"{label!r} is not one of the classes {classes}")])
        out.append(index[key])
    return np.asarray(out, dtype=np.int64)


def _label_text(label: object) -> str | None:
    # Class names are stored as text; 1 and 1.0 both name the class "1".
    if isinstance(label, bool):
        return str(label).lower()
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return label if isinstance(label, str) else (str(label) if isinstance(label, int) else None)


def _regression_targets(model: mlp.Model, y: list) -> np.ndarray:
    outputs = model.layers[-1][0].shape[1]
    rows = [v if isinstance(v, list) else [v] for v in y]
    for i, row in enumerate(rows):
        if len(row) != outputs or not all(_is_number(v) for v in row):
            raise InvalidInput(f"each target must be {outputs} number(s)",
                               [(f"y[{i}]", f"expected {outputs} number(s)")])
    return np.asarray(rows, dtype=np.float64)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
