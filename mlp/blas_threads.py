"""Limit numpy's OpenBLAS to one thread while training networks too small to gain from more.

OpenBLAS threads a 64x64x128 product, and on such sizes waking a second thread costs more
than it saves (docs/performance.md). The library's own thread setter is called through
ctypes (stdlib), so mlp still imports only numpy and the standard library; with another
BLAS, or none found, the limit is a no-op.
"""
import contextlib
import ctypes
import glob
import os

import numpy as np

# (setter, getter) names by OpenBLAS build: numpy's wheels (scipy-openblas, 64-bit ints), then plain builds.
_SYMBOLS = [("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads")]
# Below this many multiply-adds in the step's largest product, one thread is faster.
SINGLE_THREAD_MACS = 1 << 22


def _find_openblas():
    """Return (set, get) functions of the OpenBLAS numpy loaded, or None."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)  # already loaded by numpy: this returns the same library
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                return setter, getter
    return None


_OPENBLAS = _find_openblas()


def wants_single_thread(sizes, batch):
    """Whether a network of layer ``sizes`` trained in batches of ``batch`` runs faster on one thread."""
    return max(batch * fi * fo for fi, fo in zip(sizes[:-1], sizes[1:])) < SINGLE_THREAD_MACS


@contextlib.contextmanager
def single_thread(enabled=True):
    """Run the block with OpenBLAS on one thread (when ``enabled``), then restore the count."""
    if not enabled or _OPENBLAS is None:
        yield
        return
    setter, getter = _OPENBLAS
    before = getter()
    if before <= 1:
        yield
        return
    setter(1)
    try:
        yield
    finally:
        setter(before)
