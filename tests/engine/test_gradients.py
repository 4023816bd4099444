"""Backprop against central finite differences of an independent forward pass.

The reference forward pass and losses below are written from the formulas, without
the engine's code, so a shared mistake cannot hide. Every allowed (output activation,
loss) pair meets every hidden activation, at depths 1 to 6, in float64.
"""
import math

import numpy as np
import pytest

import mlp
from mlp.losses import LOSSES
from mlp.network import Network, Workspace, backward, forward

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu"]
REGRESSION_OUTPUTS = HIDDEN
PAIRS = ([(act, loss) for loss in ("mse", "mae", "huber") for act in REGRESSION_OUTPUTS]
         + [("sigmoid", "binary_cross_entropy"), ("softmax", "cross_entropy")])
ALPHA = {"leaky_relu": 0.05, "elu": 0.7}


def ref_activation(name, z):
    alpha = ALPHA.get(name, 0.0)
    if name == "identity":
        return z
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if name == "elu":
        return np.where(z > 0, z, alpha * (np.exp(z) - 1))
    if name == "softplus":
        return np.log(1 + np.exp(z))
    if name == "gelu":
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise AssertionError(name)


def ref_loss(name, a, y, delta=0.8):
    if name == "mse":
        return np.mean((a - y) ** 2)
    if name == "mae":
        return np.mean(np.abs(a - y))
    if name == "huber":
        r = np.abs(a - y)
        return np.mean(np.where(r <= delta, 0.5 * r ** 2, delta * (r - 0.5 * delta)))
    if name == "binary_cross_entropy":
        return -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a))
    if name == "cross_entropy":
        return -np.mean(np.log(a[np.arange(len(y)), y]))
    raise AssertionError(name)


def ref_total_loss(params_list, acts, X, y, loss):
    a = X
    for (W, b), act in zip(params_list, acts):
        a = ref_activation(act, a @ W + b)
    return ref_loss(loss, a, y)


def case(depth, hidden, out_act, loss, seed):
    rng = np.random.default_rng(seed)
    n, d, width, n_out = 5, 3, 4, (3 if loss == "cross_entropy" else (1 if loss == "binary_cross_entropy" else 2))
    acts = [hidden] * (depth - 1) + [out_act]
    units = [width] * (depth - 1) + [n_out]
    net = Network(d, acts, units, [ALPHA.get(a, 0.0) for a in acts], np.float64)
    net.params[...] = rng.normal(0, 0.7, net.n_params)
    X = rng.normal(size=(n, d))
    if loss == "cross_entropy":
        y = rng.integers(0, n_out, n)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, (n, 1)).astype(float)
    else:
        y = rng.normal(size=(n, n_out))
    return net, acts, X, y


KINKED = {"relu", "leaky_relu", "elu"}


def near_kink(net, acts, X, y, loss, margin=1e-3):
    """True when a pre-activation or residual lies within ``margin`` of a kink, where the
    derivative is undefined and finite differences straddle two slopes."""
    a = X
    for W, b, act in zip(net.W, net.b, acts):
        z = a @ W + b
        if act in KINKED and np.abs(z).min() < margin:
            return True
        a = ref_activation(act, z)
    r = np.abs(a - y) if loss in ("mae", "huber") else None
    return r is not None and (r.min() < margin or (loss == "huber" and np.abs(r - 0.8).min() < margin))


def smooth_case(depth, hidden, out_act, loss, seed):
    """Draw cases from successive seeds until one keeps clear of every kink and no layer's
    gradient is exactly zero (all-dead relu layers would make the check vacuous)."""
    while True:
        net, acts, X, y = case(depth, hidden, out_act, loss, seed)
        if not near_kink(net, acts, X, y, loss):
            grads = engine_gradient(net, X, y, loss)
            if all(np.abs(grads[s:e]).max() > 1e-8 for s, _, e in net.bounds):
                return net, acts, X, y
        seed += 1000


def engine_gradient(net, X, y, loss):
    ws = Workspace(net, len(X))
    grads = np.zeros(net.n_params)
    forward(net, ws, X)
    backward(net, ws, y, LOSSES[loss][1], {"name": loss, "delta": 0.8}, 1.0 / len(X), net.augmented_views(grads))
    return grads


def numeric_gradient(net, acts, X, y, loss, h=1e-4):
    """Five-point central differences: truncation error O(h⁴), so h can be large enough
    that rounding (ε·L/h) stays far below 1e-6 even for gradients near 1e-5."""
    theta = net.params.copy()
    grad = np.empty_like(theta)
    for i in range(theta.size):
        values = {}
        for k in (2, 1, -1, -2):
            p = theta.copy()
            p[i] += k * h
            Ws, bs = net.views(p)
            values[k] = ref_total_loss(list(zip(Ws, bs)), acts, X, y, loss)
        grad[i] = (-values[2] + 8 * values[1] - 8 * values[-1] + values[-2]) / (12 * h)
    return grad


CASES = [(1 + (i + j) % 6 if j else 1, hidden, out_act, loss)
         for i, (out_act, loss) in enumerate(PAIRS) for j, hidden in enumerate([None] + HIDDEN)]
CASES = [(max(depth, 2) if hidden else 1, hidden or "identity", out_act, loss)
         for depth, hidden, out_act, loss in CASES]


@pytest.mark.parametrize("depth,hidden,out_act,loss", CASES)
def test_backprop_matches_finite_differences(depth, hidden, out_act, loss):
    net, acts, X, y = smooth_case(depth, hidden, out_act, loss, seed=depth * 31 + len(hidden))
    bp = engine_gradient(net, X, y, loss)
    fd = numeric_gradient(net, acts, X, y, loss)
    for l, ((gw, gb), (nw, nb)) in enumerate(zip(zip(*net.views(bp)), zip(*net.views(fd)))):
        for a, b in ((gw, nw), (gb, nb)):
            err = np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)
            assert err < 1e-6, (l + 1, err)


def test_every_depth_is_covered():
    assert {c[0] for c in CASES} == {1, 2, 3, 4, 5, 6}
    assert {(c[2], c[3]) for c in CASES} == set(PAIRS)
    assert {c[1] for c in CASES if c[0] > 1} == set(HIDDEN)


def test_engine_gradient_check_reports_per_layer_errors_and_costs(spec_factory):
    spec = spec_factory(network={"layers": [{"units": 5, "activation": "elu"}, {"units": 3, "activation": "gelu"},
                                            {"units": 1, "activation": "sigmoid"}]})
    X, y, _ = mlp.datasets.make("moons", n_samples=20, seed=3)
    report = mlp.gradient_check(spec, X, y, n_classes=2, samples=6)
    assert [r["layer"] for r in report["layers"]] == [1, 2, 3]
    assert report["max_rel_error"] < 1e-6
    n_params = 2 * 5 + 5 + 5 * 3 + 3 + 3 + 1
    assert report["finite_differences"]["forward_passes"] == 2 * n_params
    assert report["backprop"] == {**report["backprop"], "forward_passes": 1, "backward_passes": 1}


def test_gradient_check_uses_given_weights_and_checkpoint(spec_factory):
    spec = spec_factory()
    X, y, _ = mlp.datasets.make("xor")
    trainer = mlp.Trainer(spec, X, y, n_classes=2)
    trainer.fit()
    by_model = mlp.gradient_check(spec, X, y, n_classes=2, weights=trainer.model())
    by_state = mlp.gradient_check(spec, X, y, n_classes=2, state=trainer.state_bytes())
    assert by_model["layers"] == by_state["layers"]
    assert by_model["max_rel_error"] < 1e-6


def test_gradient_check_converts_only_the_rows_it_checks(spec_factory):
    # 10^10 rows as float64 would be 160 GB: converting X before slicing cannot pass.
    X = np.broadcast_to(np.array([[1.0, 0.0]], dtype=np.float32), (10**10, 2))
    y = np.broadcast_to(np.int64(1), (10**10,))
    result = mlp.gradient_check(spec_factory(), X, y, n_classes=2, samples=4)
    assert result["samples"] == 4 and result["max_rel_error"] < 1e-6


@pytest.mark.parametrize("loss,out_act", [("mse", "tanh"), ("mae", "identity"), ("huber", "elu"),
                                          ("binary_cross_entropy", "sigmoid"), ("cross_entropy", "softmax")])
@pytest.mark.parametrize("scale", [1.0, 400.0])
def test_engine_loss_values_match_the_reference_even_for_extreme_logits(loss, out_act, scale):
    net, acts, X, y = case(2, "tanh", out_act, loss, seed=11)
    net.W[-1][...] *= scale  # scale 400 drives logits far past exp's range
    ws = Workspace(net, len(X))
    out = forward(net, ws, X)
    engine = LOSSES[loss][0](ws.z[-1], out, y, {"name": loss, "delta": 0.8})
    z = ref_activation("tanh", X @ net.W[0] + net.b[0]) @ net.W[1] + net.b[1]
    if loss == "cross_entropy":
        reference = np.mean(np.logaddexp.reduce(z, axis=1) - z[np.arange(len(y)), y])
    elif loss == "binary_cross_entropy":
        reference = np.mean(np.logaddexp(0, z) - y * z)
    else:
        reference = ref_loss(loss, ref_activation(out_act, z), y)
    assert np.isfinite(engine) and engine == pytest.approx(reference, rel=1e-12)
