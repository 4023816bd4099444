"""The reproducibility manifest stored with every job."""
from __future__ import annotations

import importlib.metadata
import os

import numpy as np

from jobs.models import Dataset

# Read by OpenBLAS, MKL and OpenMP builds, in the order they take precedence.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


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
    """numpy and BLAS versions of the worker that trains the job, and its BLAS threads.

    `blas_threads` is the configured value; `blas.threads` is what the loaded BLAS
    reports (threadpoolctl, when installed), which is what decides summation order.
    """
    blas = _blas_from_threadpoolctl() or _blas_from_numpy()
    return {
        "numpy_version": np.__version__,
        "blas": blas,
        "blas_threads": blas["threads"] if blas["threads"] is not None else blas_threads,
        "blas_threads_configured": blas_threads,
    }


def _blas_from_threadpoolctl() -> dict | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    if not libs:
        return None
    # numpy's own BLAS first: other libraries (scipy's copy) do not run numpy's matmul.
    libs.sort(key=lambda i: "numpy" not in (i.get("filepath") or ""))
    lib = libs[0]
    return {"name": lib.get("internal_api"), "version": lib.get("version"),
            "threads": lib.get("num_threads"), "source": "threadpoolctl"}


def _blas_from_numpy() -> dict:
    config = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    threads = next((os.environ[v] for v in THREAD_VARIABLES if os.environ.get(v)), None)
    return {"name": config.get("name"), "version": config.get("version"),
            "threads": int(threads) if threads and threads.isdigit() else None,
            "source": "numpy build configuration"}


def _version() -> str:
    try:
        return importlib.metadata.version("gradtrace")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
