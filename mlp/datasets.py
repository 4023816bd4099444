"""Small seeded 2-D toy datasets, generated with numpy only.

``make(name, n_samples=..., noise=..., seed=0)`` returns ``(X, labels, classes)``:
X float64 (n, 2), labels int (n,), and the class names.
"""
import numpy as np

DEFAULT_NOISE = {"xor": 0.0, "moons": 0.1, "circles": 0.05, "spirals": 0.2, "blobs": 1.0}


def xor(n_samples, noise, rng):
    """The four XOR points (n_samples and noise are ignored)."""
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return X, np.array([0, 1, 1, 0])


def moons(n_samples, noise, rng):
    """Two interleaving half circles (as scikit-learn's make_moons)."""
    n_out = n_samples // 2
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_samples - n_out)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)])
    return X, np.repeat([0, 1], [n_out, n_samples - n_out])


def circles(n_samples, noise, rng):
    """A circle inside another (radius 0.5 inside 1)."""
    n_out = n_samples // 2
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_samples - n_out, endpoint=False)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        0.5 * np.stack([np.cos(t_in), np.sin(t_in)], 1)])
    return X, np.repeat([0, 1], [n_out, n_samples - n_out])


def spirals(n_samples, noise, rng):
    """Two interleaved spiral arms."""
    n0 = n_samples // 2
    labels = np.repeat([0, 1], [n0, n_samples - n0])
    t = np.concatenate([np.linspace(0.25, 1, n0), np.linspace(0.25, 1, n_samples - n0)]) * 3 * np.pi
    angle = t + np.pi * labels
    return np.stack([t * np.cos(angle), t * np.sin(angle)], 1) / (3 * np.pi), labels


def blobs(n_samples, noise, rng):
    """Three Gaussian blobs with fixed centres; noise is their standard deviation."""
    centres = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
    labels = np.arange(n_samples) % 3
    return centres[labels], labels


GENERATORS = {"xor": xor, "moons": moons, "circles": circles, "spirals": spirals, "blobs": blobs}


def make(name, *, n_samples=200, noise=None, seed=0):
    """Generate dataset ``name`` with Gaussian ``noise`` (default per dataset), shuffled by ``seed``."""
    if name not in GENERATORS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(GENERATORS)}")
    rng = np.random.Generator(np.random.PCG64(seed))
    noise = DEFAULT_NOISE[name] if noise is None else float(noise)
    X, labels = GENERATORS[name](int(n_samples), noise, rng)
    if name != "xor":
        X = X + rng.normal(0.0, noise, size=X.shape) if noise else X
        order = rng.permutation(len(X))
        X, labels = X[order], labels[order]
    n_classes = int(labels.max()) + 1
    return np.ascontiguousarray(X, dtype=np.float64), labels.astype(np.int64), [str(c) for c in range(n_classes)]
