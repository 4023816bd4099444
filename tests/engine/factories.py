"""Factories for engine tests: specs with overrides, and small seeded datasets."""
import copy

import numpy as np

import mlp

BASE_SPEC = {
    "network": {"layers": [{"units": 8, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}]},
    "loss": "binary_cross_entropy",
    "optimizer": {"name": "sgd", "learning_rate": 0.5},
    "training": {"epochs": 5, "batch_size": 4, "seed": 0},
}


def merge(base, overrides):
    """Return ``base`` deep-merged with ``overrides`` (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_spec(validate=True, **overrides):
    """Return BASE_SPEC with top-level sections deep-merged from keyword overrides."""
    raw = merge(BASE_SPEC, overrides)
    return mlp.validate_spec(raw) if validate else raw


def train_test_split(X, y, test_fraction=0.3, seed=0):
    """Split rows at random into (X_train, y_train, X_test, y_test)."""
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = int(len(X) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]
