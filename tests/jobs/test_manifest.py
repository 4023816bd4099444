"""The reproducibility manifest: what is known at submission, and what the worker adds."""
from __future__ import annotations

import builtins

import numpy as np
import pytest

from jobs import manifest


def test_runtime_manifest_reports_the_blas_threads_in_use():
    threadpool_info = pytest.importorskip("threadpoolctl").threadpool_info
    out = manifest.runtime_manifest(1)
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    assert out["numpy_version"] == np.__version__
    assert out["blas"]["source"] == "threadpoolctl"
    assert out["blas"]["threads"] in {i["num_threads"] for i in blas}
    assert out["blas_threads"] == out["blas"]["threads"]
    assert out["blas_threads_configured"] == 1


def test_without_threadpoolctl_the_build_config_and_environment_are_used(monkeypatch):
    real_import = builtins.__import__

    def no_threadpoolctl(name, *args, **kwargs):
        if name == "threadpoolctl":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_threadpoolctl)
    for variable in manifest.THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    out = manifest.runtime_manifest(2)
    config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    assert out["blas"] == {"name": config["name"], "version": config["version"], "threads": 3,
                           "source": "numpy build configuration"}
    assert out["blas_threads"] == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert manifest.runtime_manifest(2)["blas_threads"] == 2  # unknown: the configured value
