"""Fixtures for engine tests; the factories live in tests/engine/factories.py."""
import pytest

import mlp
from tests.engine.factories import make_spec


@pytest.fixture
def spec_factory():
    return make_spec


@pytest.fixture
def moons():
    X, y, _ = mlp.datasets.make("moons", n_samples=200, noise=0.1, seed=1)
    return X, y
