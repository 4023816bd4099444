"""Gradient check: backprop against central finite differences, per layer, in float64."""
import time

import numpy as np

from .checkpoint import unpack
from .datafit import encode_targets, infer_n_classes
from .losses import LOSSES
from .network import Network, Workspace, backward, forward
from .spec import validate_spec

STEP = 1e-6  # central-difference step; truncation O(h²) and rounding O(ε/h) balance near here


def gradient_check(spec, X, y, *, n_classes=None, samples=8, state=None, weights=None):
    """Compare backprop's gradient of the batch-mean loss with finite differences.

    Uses the first ``samples`` rows of X (n, d) and y, and the weights of ``weights``
    (a Model), else of ``state`` (Trainer.state_bytes()), else a fresh initialisation
    from the spec's seed. Returns per-layer relative errors ‖g_bp − g_fd‖ / (‖g_bp‖ + ‖g_fd‖),
    the maximum, and the time and pass counts of each method.
    """
    spec = validate_spec(spec)
    net, x, t, loss = _setup(spec, X, y, n_classes, samples, state, weights)
    value, delta_fn = LOSSES[loss["name"]]
    ws = Workspace(net, len(x))
    grads = np.zeros(net.n_params)
    gW, gb = net.views(grads)
    started = time.perf_counter()
    forward(net, ws, x)
    backward(net, ws, t, delta_fn, loss, 1.0 / len(x), net.augmented_views(grads))
    bp_seconds = time.perf_counter() - started
    started = time.perf_counter()
    numeric = np.empty_like(grads)
    for i in range(net.n_params):
        numeric[i] = _central_difference(net, ws, x, t, value, loss, i)
    fd_seconds = time.perf_counter() - started
    layers = []
    nW, nb = net.views(numeric)
    for l in range(net.depth):
        layers.append({"layer": l + 1, "weight_rel_error": relative_error(gW[l], nW[l]),
                       "bias_rel_error": relative_error(gb[l], nb[l])})
    worst = max(max(r["weight_rel_error"], r["bias_rel_error"]) for r in layers)
    return {"layers": layers, "max_rel_error": worst, "samples": len(x), "parameters": net.n_params,
            "backprop": {"seconds": bp_seconds, "forward_passes": 1, "backward_passes": 1},
            "finite_differences": {"seconds": fd_seconds, "forward_passes": 2 * net.n_params}}


def relative_error(a, b):
    """Return ‖a − b‖ / (‖a‖ + ‖b‖), or 0 when both are zero."""
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


def _central_difference(net, ws, x, t, value, loss, i):
    """Return (L(θ + h eᵢ) − L(θ − h eᵢ)) / 2h for parameter i."""
    p = net.params
    old = p[i]
    p[i] = old + STEP
    up = value(ws.z[-1], forward(net, ws, x), t, loss)
    p[i] = old - STEP
    down = value(ws.z[-1], forward(net, ws, x), t, loss)
    p[i] = old
    return (up - down) / (2 * STEP)


def _setup(spec, X, y, n_classes, samples, state, weights):
    layers = spec["network"]["layers"]
    X = np.asarray(X[:samples], dtype=np.float64)  # slice first: X may be a big memory map
    net = Network(X.shape[1], [l["activation"] for l in layers], [l["units"] for l in layers],
                  [l.get("alpha", 0.0) for l in layers], np.float64)
    if weights is not None:
        for (W, b), tW, tb in zip(weights.layers, net.W, net.b):
            tW[...], tb[...] = W, b
    elif state is not None:
        net.params[...] = unpack(state)[0]["params"]
    else:
        seed = spec["training"]["seed"] or 0
        init_ss = np.random.SeedSequence(seed).spawn(3)[0]
        net.initialise(np.random.Generator(np.random.PCG64(init_ss)), spec["network"]["init"])
    loss, units = spec["loss"]["name"], layers[-1]["units"]
    t, _ = encode_targets(np.asarray(y)[:samples], loss, infer_n_classes(loss, units, n_classes), units, np.float64)
    return net, X, t, spec["loss"]
