"""A trained network's weights, for prediction and storage."""
import numpy as np

from .activations import ACTIVATIONS
from .checkpoint import pack, unpack

EVAL_CHUNK = 4096  # rows per forward pass, to bound memory on large inputs


class Model:
    """Weights ``layers`` [(W (fan_in, fan_out), b (fan_out,)), ...] and ``activations``.

    ``n_classes`` is set for classifiers; ``squeeze`` makes a one-column regression
    output come back as (n,), matching 1-D training targets.
    """

    def __init__(self, layers, activations, alphas, loss, n_classes=None, squeeze=False):
        self.layers = [(np.array(W), np.array(b)) for W, b in layers]
        self.activations = list(activations)
        self.alphas = [float(a) for a in alphas]
        self.loss = dict(loss)
        self.n_classes = n_classes
        self.squeeze = bool(squeeze)

    def output(self, X):
        """Return the output layer's activations aᴸ (n, units) for inputs X (n, n_in)."""
        X = np.asarray(X, dtype=self.layers[0][0].dtype)
        parts = [self._forward(X[i:i + EVAL_CHUNK]) for i in range(0, len(X), EVAL_CHUNK)]
        return np.concatenate(parts) if parts else np.empty((0, self.layers[-1][0].shape[1]))

    def _forward(self, a):
        for (W, b), act, alpha in zip(self.layers, self.activations, self.alphas):
            z = a @ W + b
            ACTIVATIONS[act](z, z, alpha)
            a = z
        return a

    def predict(self, X):
        """Return class indices (n,) for a classifier, else values (n, k) or (n,)."""
        out = self.output(X)
        if self.n_classes is not None:
            return predict_labels(out)
        return out[:, 0] if self.squeeze else out

    def predict_proba(self, X):
        """Return class probabilities (n, n_classes) of a classifier.

        A single sigmoid-like unit p gives [1 - p, p]; several non-softmax units (mse on
        one-hot targets) are clipped to [0, 1] and normalised per row.
        """
        if self.n_classes is None:
            raise ValueError("predict_proba needs a classifier")
        out = self.output(X)
        if out.shape[1] == 1:
            p = np.clip(out[:, 0], 0.0, 1.0)
            return np.stack([1.0 - p, p], axis=1)
        if self.activations[-1] == "softmax":
            return out
        out = np.clip(out, 0.0, 1.0)
        total = out.sum(axis=1, keepdims=True)
        return np.divide(out, total, out=np.full_like(out, 1.0 / out.shape[1]), where=total > 0)

    def to_bytes(self):
        """Serialise to npz bytes (no pickle)."""
        arrays = {}
        for i, (W, b) in enumerate(self.layers):
            arrays[f"W{i}"], arrays[f"b{i}"] = W, b
        meta = {"format": "gradtrace.model/1", "activations": self.activations, "alphas": self.alphas,
                "loss": self.loss, "n_classes": self.n_classes, "squeeze": self.squeeze}
        return pack(arrays, meta)

    @classmethod
    def from_bytes(cls, data):
        """Load a model written by ``to_bytes``."""
        arrays, meta = unpack(data)
        layers = [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(len(meta["activations"]))]
        return cls(layers, meta["activations"], meta["alphas"], meta["loss"],
                   meta["n_classes"], meta["squeeze"])


def predict_labels(out):
    """Return class indices (n,) from outputs (n, units): threshold 0.5 for one unit, else argmax."""
    if out.shape[1] == 1:
        return (out[:, 0] > 0.5).astype(np.intp)
    return np.argmax(out, axis=1)


# Up to this many rows, a one-unit output is compared in Python: cheaper than numpy calls.
SMALL_BATCH = 32


def count_correct(out, labels):
    """Return how many rows of outputs (m, units) predict their class index in ``labels`` (m,)."""
    if out.shape[1] == 1:
        if out.shape[0] <= SMALL_BATCH:
            # The same comparisons (0.5 is exact in both dtypes), without three numpy calls.
            return sum((v > 0.5) == c for v, c in zip(out[:, 0].tolist(), labels.tolist()))
        return int(np.count_nonzero((out[:, 0] > 0.5) == labels))
    return int(np.count_nonzero(out.argmax(axis=1) == labels))
