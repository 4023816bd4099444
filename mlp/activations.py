"""Activation functions and their derivatives, as two name-keyed tables.

``forward(z, out, alpha)`` writes f(z) into ``out`` (which may be ``z`` itself: the
activation then runs in place). ``backward(delta, z, a, alpha)`` multiplies ``delta``
in place by f'(z). Only entries with ``NEEDS_Z`` read ``z``; the others use the
output ``a`` (as scikit-learn does), which lets the forward pass overwrite z.
Arrays are (batch, units); hidden layers hand the elementwise functions their
transposed (units, batch) buffers (network.py), which changes nothing for them.
"""
import numpy as np

_GELU_C = np.sqrt(2.0 / np.pi)


def identity(z, out, alpha):
    if out is not z:
        np.copyto(out, z)


def sigmoid(z, out, alpha):
    # For very negative z, exp(-z) overflows to inf and 1/(1+inf) = 0, the right limit;
    # the trainer runs under np.errstate(over="ignore") for this.
    np.negative(z, out=out)
    np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)


def tanh(z, out, alpha):
    np.tanh(z, out=out)


def relu(z, out, alpha):
    # Zeros of z's own shape (a row for big z) instead of the scalar 0: ~2x faster each
    # step (see docs/performance.md).
    np.maximum(z, _zeros_for(z), out=out)


def leaky_relu(z, out, alpha):
    np.maximum(z, z * alpha, out=out)


def elu(z, out, alpha):
    neg = np.minimum(z, 0.0)
    np.expm1(neg, out=neg)
    neg *= alpha
    np.maximum(z, 0.0, out=out)
    out += neg


def softplus(z, out, alpha):
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|), finite for any z.
    t = np.abs(z)
    np.negative(t, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    np.maximum(z, 0.0, out=out)
    out += t


def gelu(z, out, alpha):
    # The tanh approximation (Hendrycks & Gimpel 2016); numpy has no vectorised erf.
    np.multiply(0.5 * z, 1.0 + np.tanh(_GELU_C * (z + 0.044715 * z ** 3)), out=out)


def softmax(z, out, alpha):
    np.subtract(z, z.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)


def identity_derivative(delta, z, a, alpha):
    pass


def sigmoid_derivative(delta, z, a, alpha):
    delta *= a
    delta *= 1.0 - a


def tanh_derivative(delta, z, a, alpha):
    delta *= 1.0 - a * a


def relu_derivative(delta, z, a, alpha):
    # a > 0 exactly where z > 0; the derivative at 0 is taken as 0. Comparing with
    # same-shape zeros skips the scalar's broadcast setup (the same booleans).
    delta *= np.greater(a, _zeros_for(a))


def leaky_relu_derivative(delta, z, a, alpha):
    delta *= np.where(a > 0, 1.0, alpha).astype(delta.dtype, copy=False)


def elu_derivative(delta, z, a, alpha):
    # For z <= 0, f'(z) = alpha * e^z = a + alpha.
    delta *= np.where(a > 0, 1.0, a + alpha).astype(delta.dtype, copy=False)


def softplus_derivative(delta, z, a, alpha):
    # f'(z) = sigmoid(z) = 1 - e^-a.
    delta *= -np.expm1(-a)


def gelu_derivative(delta, z, a, alpha):
    inner = _GELU_C * (z + 0.044715 * z ** 3)
    t = np.tanh(inner)
    d = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * z * z)
    delta *= d


def softmax_derivative(delta, z, a, alpha):
    # Full Jacobian-vector product; training fuses softmax with cross-entropy instead.
    dot = np.sum(delta * a, axis=1, keepdims=True)
    delta -= dot
    delta *= a


_ZEROS = {}
# Up to this many entries, relu compares with zeros of z's full shape: an elementwise
# call without broadcasting is about 1 µs cheaper. Bigger z gets a broadcast row, which
# reads far less memory.
_FULL_ZEROS = 1 << 14


def _zeros_for(z):
    """Return read-only zeros (shared, so never written) of z's shape and memory order, or
    its row shape when z is big."""
    # The same memory order as z (the network's output layer is a transposed view):
    # mixed orders take numpy's slower strided loop.
    fortran = z.ndim == 2 and z.strides[0] < z.strides[1]
    key = (z.shape, z.dtype, fortran)
    zeros = _ZEROS.get(key)
    if zeros is None:
        if len(_ZEROS) >= 256:  # a long-lived worker sees many batch shapes: bound the cache
            _ZEROS.clear()
        shape = z.shape if z.size <= _FULL_ZEROS else z.shape[-1:]
        zeros = _ZEROS[key] = np.zeros(shape, dtype=z.dtype, order="F" if fortran else "C")
        zeros.flags.writeable = False
    return zeros


ACTIVATIONS = {
    "identity": identity, "sigmoid": sigmoid, "tanh": tanh, "relu": relu,
    "leaky_relu": leaky_relu, "elu": elu, "softplus": softplus, "gelu": gelu,
    "softmax": softmax,
}
DERIVATIVES = {
    "identity": identity_derivative, "sigmoid": sigmoid_derivative,
    "tanh": tanh_derivative, "relu": relu_derivative,
    "leaky_relu": leaky_relu_derivative, "elu": elu_derivative,
    "softplus": softplus_derivative, "gelu": gelu_derivative,
    "softmax": softmax_derivative,
}
# Activations whose derivative needs z, so the forward pass must keep z and a apart.
NEEDS_Z = frozenset({"gelu"})
# Activations taking an ``alpha`` parameter, with its default.
ALPHA_DEFAULTS = {"leaky_relu": 0.01, "elu": 1.0}
RELU_FAMILY = frozenset({"relu", "leaky_relu", "elu"})
SATURATING = frozenset({"sigmoid", "tanh"})
