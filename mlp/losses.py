"""Loss functions, averaged over the batch, as a name-keyed table.

Each entry has ``value(z, a, y, p) -> float`` and ``delta(z, a, y, p, out, scale)``,
which writes ``scale * dL_sum/dz`` for the output layer into ``out`` (batch, units),
where L_sum is the loss summed over the batch. The trainer passes ``scale = 1/batch``,
so the output error already carries the batch mean and gradients need no extra pass.
``p`` is the loss parameters (``{"delta": ...}`` for huber); ``d_act`` is the output
activation's derivative, applied by ``delta`` for losses that are not fused with it.

Targets ``y``: (batch, units) floats for mse/mae/huber and binary_cross_entropy;
(batch,) integer class indices for cross_entropy.
"""
import numpy as np


def mse_value(z, a, y, p):
    r = a - y
    return float(np.vdot(r, r)) / r.size


def mse_delta(z, a, y, p, out, scale, d_act):
    # d/da of mean((a - y)^2) over units is 2 (a - y) / units.
    np.subtract(a, y, out=out)
    out *= 2.0 * scale / a.shape[1]
    d_act(out, z, a)


def mae_value(z, a, y, p):
    return float(np.abs(a - y).sum()) / a.size


def mae_delta(z, a, y, p, out, scale, d_act):
    np.subtract(a, y, out=out)
    np.sign(out, out=out)
    out *= scale / a.shape[1]
    d_act(out, z, a)


def huber_value(z, a, y, p):
    d = p["delta"]
    r = np.abs(a - y)
    quad = np.minimum(r, d)
    return float((0.5 * quad * quad + d * (r - quad)).sum()) / a.size


def huber_delta(z, a, y, p, out, scale, d_act):
    d = p["delta"]
    np.subtract(a, y, out=out)
    np.clip(out, -d, d, out=out)
    out *= scale / a.shape[1]
    d_act(out, z, a)


def bce_value(z, a, y, p):
    # From the logits: softplus(z) - y z, with softplus as logaddexp(0, z), finite for any z.
    return (float(np.logaddexp(0.0, z).sum()) - float(np.vdot(y, z))) / z.shape[0]


def bce_delta(z, a, y, p, out, scale, d_act):
    # Fused with the sigmoid: dL/dz = sigmoid(z) - y.
    np.subtract(a, y, out=out)
    out *= scale


def cross_entropy_value(z, a, y, p):
    # -log softmax(z)_y read from the softmax output a, which the forward pass computed
    # stably (max subtracted). Only when a_y underflows (a loss beyond ~87 in float32)
    # is log-sum-exp recomputed from the logits, so the loss stays exact and finite.
    rows = _rows(z.shape[0])
    a_y = a[rows, y]
    if a_y.min() > _SAFE[a.dtype.char]:
        return -float(np.log(a_y).sum()) / z.shape[0]
    m = z.max(axis=1)
    lse = np.log(np.exp(z - m[:, None]).sum(axis=1)) + m
    return float((lse - z[rows, y]).sum()) / z.shape[0]


_SAFE = {"f": 1e-30, "d": 1e-300}
_ROWS = {}


def _rows(m):
    """Return a cached arange(m), the row index for picking each sample's target entry."""
    rows = _ROWS.get(m)
    if rows is None:
        rows = _ROWS[m] = np.arange(m)
    return rows


def cross_entropy_delta(z, a, y, p, out, scale, d_act):
    # Fused with the softmax: dL/dz = softmax(z) - onehot(y), scaled: scale·a, then
    # scale subtracted at the targets (two calls, not three).
    np.multiply(a, scale, out=out)
    out[_rows(z.shape[0]), y] -= scale


LOSSES = {
    "mse": (mse_value, mse_delta),
    "mae": (mae_value, mae_delta),
    "huber": (huber_value, huber_delta),
    "binary_cross_entropy": (bce_value, bce_delta),
    "cross_entropy": (cross_entropy_value, cross_entropy_delta),
}
# The output activation each fused loss requires.
FUSED_ACTIVATION = {"binary_cross_entropy": "sigmoid", "cross_entropy": "softmax"}
