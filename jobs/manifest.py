"""The reproducibility manifest stored with every job."""
from __future__ import annotations

import importlib.metadata

import numpy as np

from jobs.models import Dataset


def build_manifest(spec: dict, dataset: Dataset, spec_hash: str) -> dict:
    """What is needed to reproduce the run, as known when the job is accepted.

    The worker adds its own numpy/BLAS details when it claims the job (`runtime_manifest`).
    """
    return {
        "seed": spec["training"]["seed"],
        "dataset_sha256": dataset.sha256,
        "task": dataset.task,
        "classes": dataset.classes,
        "n_features": dataset.n_features,
        "spec_sha256": spec_hash,
        "gradtrace_version": _version(),
    }


def runtime_manifest(blas_threads: int) -> dict:
    """numpy and BLAS versions of the worker that trains the job."""
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return {
        "numpy_version": np.__version__,
        "blas": {"name": blas.get("name"), "version": blas.get("version")},
        "blas_threads": blas_threads,
    }


def _version() -> str:
    try:
        return importlib.metadata.version("gradtrace")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
