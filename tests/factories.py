"""Factories shared by the test packages: specs, users with tokens, datasets, jobs."""
from __future__ import annotations

import copy

import numpy as np

from jobs.auth import get_or_create_user, issue_token
from jobs.db import session_scope
from jobs.layer_values import pack
from jobs.lease import claim
from jobs.metric_writer import EPOCH_FIELDS, MetricBuffer, finite_or_none
from mlp.records import LAYER_FIELDS

XOR_SPEC = {
    "network": {"layers": [{"units": 4, "activation": "tanh"},
                           {"units": 1, "activation": "sigmoid"}]},
    "loss": "binary_cross_entropy",
    "optimizer": {"name": "sgd", "learning_rate": 0.5},
    "training": {"epochs": 300, "batch_size": 4, "seed": 0},
}


def xor_job(dataset_id: str, **overrides) -> dict:
    """A JSON body for POST /v1/jobs training XOR; `training` keys may be overridden."""
    body = {"dataset_id": dataset_id, "name": "xor", **copy.deepcopy(XOR_SPEC)}
    body["training"].update(overrides)
    return body


def long_job(dataset_id: str) -> dict:
    """A job that is still training whenever a test cancels it, on any machine: the XOR
    network for 100,000 epochs (the default `max_epochs`) of one sample per step on a
    dataset of a few hundred rows. (60,000 epochs of the four XOR points took about 3 s
    on a fast CPU, and ended before a browser test reached its cancel button.)"""
    return {**xor_job(dataset_id, epochs=100_000, batch_size=1), "name": "long"}


def make_token(factory, pepper: str, name: str, *, admin: bool = False) -> str:
    with session_scope(factory) as session:
        user = get_or_create_user(session, name, is_admin=admin)
        _, secret = issue_token(session, user, pepper)
    return secret


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def epoch_record(epoch: int, layers: int = 1) -> dict:
    """One recorded epoch of a network with `layers` layers, as the engine's record dict
    (each layer's delta norm tells its epoch and layer apart)."""
    return {"epoch": epoch, "train_loss": 0.5, "val_loss": None, "train_accuracy": 0.5,
            "val_accuracy": None, "learning_rate": 0.1, "seconds": 0.0,
            "layers": [{"layer": k, "weight_grad_norm": 1.0, "bias_grad_norm": 1.0,
                        "delta_norm": epoch + k / 10, "weight_norm": 1.0,
                        "update_ratio": 0.1} for k in range(1, layers + 1)]}


def claimed_metric_buffer(factory, job_id: str) -> MetricBuffer:
    """A worker's metric writer on a job it has just claimed; it flushes when told to."""
    with session_scope(factory) as session:
        lease = claim(session, job_id, "w1", ttl_s=60, max_attempts=3)
    return MetricBuffer(factory, lease, flush_seconds=60, flush_rows=100)


def epoch_rows(job_id: str, record: dict) -> dict:
    """An EpochRecord.to_dict() as its epoch row (a dict of EpochMetric's columns), built
    one value at a time: the reference the worker's array path
    (jobs/metric_writer.record_arrays) is checked against, and rows for tests and benches."""
    row = {"job_id": job_id, "epoch": record["epoch"]}
    row.update({f: finite_or_none(record.get(f)) for f in EPOCH_FIELDS})
    table = [[np.nan if layer.get(f) is None else layer[f] for f in LAYER_FIELDS]
             for layer in sorted(record["layers"], key=lambda layer: layer["layer"])]
    row["layers"] = pack(np.array(table, dtype=np.float64).reshape(1, -1, len(LAYER_FIELDS)))[0]
    return row


def metric_row(job_id: str, epoch: int, layers: list[dict], **values) -> dict:
    """An epoch_metrics row as the worker stores it: the epoch's `values` (the fields not
    given None) and each layer's values in `layers`, in layer order (the fields not given
    NaN, as a non-finite value is stored)."""
    return epoch_rows(job_id, {"epoch": epoch, **values,
                               "layers": [{"layer": i + 1, **layer}
                                          for i, layer in enumerate(layers)]})
