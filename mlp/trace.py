"""Trace one forward and backward pass: every layer's z, a, δ, ∂L/∂W and ∂L/∂b."""
import numpy as np

from .datafit import encode_targets, infer_n_classes
from .losses import LOSSES
from .network import Network, Workspace, backward, forward

TOP_K = 8


def trace(model, X, y, *, loss, n_classes=None, max_full=64):
    """Return a JSON-safe dict of the pass of inputs X (n, d) with targets y through ``model``.

    ``loss`` is a name or a loss spec ({"name": "huber", "delta": 1.0}). L is the
    batch-mean loss, so δˡ = ∂L/∂zˡ includes the 1/n factor. Each array is given as
    ``{"shape", "norm", "values"}`` when it has at most ``max_full`` entries, else as
    ``{"shape", "norm", "top"}`` with the ``TOP_K`` largest entries by magnitude.
    """
    loss = {"name": loss} if isinstance(loss, str) else dict(loss)
    loss.setdefault("delta", 1.0)
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    net = Network(X.shape[1], model.activations, [W.shape[1] for W, _ in model.layers], model.alphas, np.float64)
    for (W, b), tW, tb in zip(model.layers, net.W, net.b):
        tW[...], tb[...] = W, b
    n_classes = infer_n_classes(loss["name"], net.sizes[-1], n_classes if n_classes is not None else model.n_classes)
    t, _ = encode_targets(np.atleast_1d(np.asarray(y)), loss["name"], n_classes, net.sizes[-1], np.float64)
    ws = Workspace(net, len(X), keep_z=True)
    grads = np.zeros(net.n_params)
    gW, gb = net.views(grads)
    value, delta_fn = LOSSES[loss["name"]]
    forward(net, ws, X)
    loss_value = value(ws.z[-1], ws.a[-1], t, loss)
    backward(net, ws, t, delta_fn, loss, 1.0 / len(X), net.augmented_views(grads))
    show = lambda arr: describe(arr, max_full)  # noqa: E731
    layers = [{"layer": l + 1, "activation": net.activations[l], "z": show(ws.z[l]), "a": show(ws.a[l]),
               "delta": show(ws.delta[l]), "dW": show(gW[l]), "db": show(gb[l])} for l in range(net.depth)]
    return {"loss": float(loss_value), "input": show(X), "layers": layers}


def describe(arr, max_full):
    """Return an array as a JSON-safe dict: full values when small, else the top entries."""
    out = {"shape": list(arr.shape), "norm": float(np.linalg.norm(arr))}
    if arr.size <= max_full:
        out["values"] = arr.tolist()
        return out
    flat = np.abs(arr).ravel()
    k = min(TOP_K, flat.size)
    idx = np.argsort(-flat, kind="stable")[:k]
    out["top"] = [{"index": [int(i) for i in np.unravel_index(j, arr.shape)], "value": float(arr.flat[j])}
                  for j in idx]
    return out
