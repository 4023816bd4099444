"""Resource limits checked before a job is accepted; each error names its setting."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs.errors import LimitExceeded
from jobs.models import ACTIVE_STATUSES, Dataset, Job
from jobs.settings import Settings


def parameter_count(spec: dict, n_features: int) -> int:
    """Weights plus biases of the network the spec describes."""
    total, fan_in = 0, n_features
    for layer in spec["network"]["layers"]:
        total += (fan_in + 1) * layer["units"]
        fan_in = layer["units"]
    return total


def check_job_limits(session: Session, settings: Settings, *, owner_id: str, spec: dict,
                     dataset: Dataset) -> None:
    """Refuse a job that is too big, too long or over the owner's quota."""
    layers = spec["network"]["layers"]
    _at_most("max_layers", len(layers), settings.max_layers, "network.layers",
             "the network has {n} layers")
    for i, layer in enumerate(layers):
        _at_most("max_units", layer["units"], settings.max_units, f"network.layers[{i}].units",
                 "layer has {n} units")
    params = parameter_count(spec, dataset.n_features)
    _at_most("max_parameters", params, settings.max_parameters, "network.layers",
             "the network has {n} parameters")
    training = spec["training"]
    _at_most("max_epochs", training["epochs"], settings.max_epochs, "training.epochs",
             "{n} epochs requested")
    _at_most("max_batch_size", training["batch_size"], settings.max_batch_size,
             "training.batch_size", "batch size {n}")
    cost = float(params) * dataset.n_samples * training["epochs"]
    _at_most("max_cost", cost, settings.max_cost, "training.epochs",
             "the job's cost estimate (parameters x samples x epochs) is {n:.3g}")
    runtime = training.get("max_runtime_s")
    if runtime is not None:
        _at_most("max_runtime_s", runtime, settings.max_runtime_s, "training.max_runtime_s",
                 "{n} seconds requested")
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.owner_id == owner_id, Job.status.in_(ACTIVE_STATUSES)))
    if active >= settings.max_active_jobs_per_user:
        raise LimitExceeded(
            "max_active_jobs_per_user", settings.max_active_jobs_per_user,
            f"you already have {active} queued or running jobs; the limit "
            f"max_active_jobs_per_user is {settings.max_active_jobs_per_user}", kind="quota")


def _at_most(limit: str, n: float, maximum: float, field: str, what: str) -> None:
    if n > maximum:
        raise LimitExceeded(limit, maximum, f"{what.format(n=n)}; the limit {limit} is {maximum}",
                            field=field)
