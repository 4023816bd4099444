"""Weight initialisers, a name-keyed table of ``init(rng, fan_in, fan_out) -> (fan_in, fan_out)``.

Biases always start at zero. ``auto`` picks He for the relu family, Xavier otherwise.
"""
import numpy as np

from .activations import RELU_FAMILY


def xavier_uniform(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def xavier_normal(rng, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=(fan_in, fan_out))


def he_uniform(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def he_normal(rng, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


def lecun_normal(rng, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), size=(fan_in, fan_out))


INITIALIZERS = {
    "xavier_uniform": xavier_uniform, "xavier_normal": xavier_normal,
    "he_uniform": he_uniform, "he_normal": he_normal, "lecun_normal": lecun_normal,
}
INIT_NAMES = ("auto",) + tuple(INITIALIZERS)


def resolve_init(name, activation):
    """Return the initialiser function for ``name``, resolving ``auto`` by activation."""
    if name == "auto":
        name = "he_uniform" if activation in RELU_FAMILY else "xavier_uniform"
    return INITIALIZERS[name]
