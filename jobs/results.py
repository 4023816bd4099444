"""Trained models: loading, exporting as JSON, predicting."""
from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

import mlp
from jobs.artifacts import MODEL, load_artifact
from jobs.errors import Conflict, InvalidInput
from jobs.models import Job


def load_model(session: Session, job: Job) -> mlp.Model:
    artifact = load_artifact(session, job.id, MODEL)
    if artifact is None:
        raise Conflict(f"job {job.id} has no trained model (status {job.status})")
    return mlp.Model.from_bytes(artifact.data)


def model_to_dict(job: Job, model: mlp.Model) -> dict:
    layers = [{"layer": i + 1, "activation": act, "weights": W.tolist(), "biases": b.tolist()}
              for i, ((W, b), act) in enumerate(zip(model.layers, model.activations))]
    manifest = job.manifest or {}
    return {"job_id": job.id, "task": manifest.get("task"), "classes": manifest.get("classes"),
            "layers": layers}


def predict(job: Job, model: mlp.Model, rows: list[list[float]]) -> dict:
    """Predictions for `rows`; class labels and probabilities for classification."""
    manifest = job.manifest or {}
    n_features = model.layers[0][0].shape[0]
    bad = next((i for i, row in enumerate(rows) if len(row) != n_features), None)
    if bad is not None:
        raise InvalidInput(f"X must have {n_features} columns per row",
                           [(f"X[{bad}]", f"has {len(rows[bad])} values; expected {n_features}")])
    X = np.asarray(rows, dtype=np.float64)
    if manifest.get("task") == "classification":
        classes = manifest["classes"]
        proba = model.predict_proba(X)
        labels = [classes[i] for i in np.argmax(proba, axis=1)]
        return {"predictions": labels, "probabilities": proba.tolist(), "classes": classes}
    out = model.predict(X)
    return {"predictions": np.asarray(out).tolist()}
