"""The network: layer shapes, one flat parameter vector, and the forward/backward passes.

Notation (docs/backprop.md): a⁰ = X (batch, n_in); for l = 1..L,
zˡ = aˡ⁻¹ Wˡ + bˡ and aˡ = fˡ(zˡ), with Wˡ of shape (fan_in, fan_out) and bˡ (fan_out,).
δˡ = ∂L/∂zˡ (batch, fan_out); ∂L/∂Wˡ = aˡ⁻¹ᵀ δˡ, ∂L/∂bˡ = 1ᵀ δˡ and
δˡ⁻¹ = (δˡ Wˡᵀ) ⊙ fˡ⁻¹'(zˡ⁻¹).
"""
import functools

import numpy as np

from .activations import ACTIVATIONS, DERIVATIVES, NEEDS_Z
from .initializers import resolve_init

# Up to this many entries, per-tensor norms use one multiply + reduceat into a scratch
# buffer (fewer numpy calls); above it, one BLAS dot per tensor (one read, no writes).
SMALL_ARRAY = 1 << 16


class Network:
    """Layer sizes and activations, and all parameters in one flat array.

    The flat layout is [W¹, b¹, W², b², ...]; ``W[l]`` and ``b[l]`` are views into it,
    so an optimizer updates every layer in one whole-array operation.
    """

    def __init__(self, n_in, activations, units, alphas, dtype):
        self.sizes = [int(n_in)] + [int(u) for u in units]
        self.activations = list(activations)
        self.alphas = [float(a) for a in alphas]
        self.dtype = np.dtype(dtype)
        self.bounds = []  # (start of W, start of b, end of b) per layer
        start = 0
        for fi, fo in zip(self.sizes[:-1], self.sizes[1:]):
            self.bounds.append((start, start + fi * fo, start + fi * fo + fo))
            start += fi * fo + fo
        self.n_params = start
        # Segment starts for per-tensor norms of a flat vector: W¹, b¹, W², b², ...
        self.segments = np.array([s for w, b, _ in self.bounds for s in (w, b)], dtype=np.intp)
        self.params = np.zeros(self.n_params, self.dtype)
        self.W, self.b = self.views(self.params)
        # Looked up once here rather than per layer per step (a tiny network's step is ~1 µs a call).
        self.forward_fns = [ACTIVATIONS[a] for a in self.activations]
        self.derivative_fns = [DERIVATIVES[a] for a in self.activations]
        self.out_derivative = functools.partial(self.derivative_fns[-1], alpha=self.alphas[-1])

    @property
    def depth(self):
        return len(self.activations)

    def views(self, flat):
        """Return lists of per-layer (fan_in, fan_out) and (fan_out,) views into ``flat``."""
        Ws, bs = [], []
        for (w, b, e), fi, fo in zip(self.bounds, self.sizes[:-1], self.sizes[1:]):
            Ws.append(flat[w:b].reshape(fi, fo))
            bs.append(flat[b:e])
        return Ws, bs

    def place(self, flat):
        """Move the parameters into ``flat`` (n_params,), a view of a larger buffer; W and b follow."""
        flat[...] = self.params
        self.params = flat
        self.W, self.b = self.views(flat)

    def initialise(self, rng, init):
        """Draw weights (in float64, then cast, so both dtypes see the same draws); zero biases."""
        for W, b, act, fi, fo in zip(self.W, self.b, self.activations, self.sizes[:-1], self.sizes[1:]):
            W[...] = resolve_init(init, act)(rng, fi, fo)
            b[...] = 0.0


class Workspace:
    """Preallocated per-batch-size buffers for one forward and backward pass.

    ``z[l]``/``a[l]`` are (m, units) for layer l+1; ``a[l] is z[l]`` when the activation
    can run in place (its derivative reads only the output). The output layer and
    ``keep_z`` (for traces) keep z apart. All δ buffers share one flat array so their
    norms take one reduction; ``delta_flat`` (m·Σunits,) may be given, to place them in a
    larger buffer.
    """

    def __init__(self, net, m, keep_z=False, delta_flat=None):
        self.m = m
        last = net.depth - 1
        self.z, self.a = [], []
        for l, (act, fo) in enumerate(zip(net.activations, net.sizes[1:])):
            z = np.empty((m, fo), net.dtype)
            apart = keep_z or l == last or act in NEEDS_Z
            self.z.append(z)
            self.a.append(np.empty_like(z) if apart else z)
        sizes = [m * fo for fo in net.sizes[1:]]
        self.delta_flat = np.empty(sum(sizes), net.dtype) if delta_flat is None else delta_flat
        self.delta_segments = np.cumsum([0] + sizes[:-1]).astype(np.intp)
        self.delta = [self.delta_flat[s:s + n].reshape(m, -1)
                      for s, n in zip(self.delta_segments, sizes)]
        self.ones = np.ones(m, net.dtype)
        self.forward_plan = list(zip(net.W, net.b, self.z, self.a, net.forward_fns, net.alphas))
        small = self.delta_flat.size <= SMALL_ARRAY
        self.scratch = np.empty_like(self.delta_flat) if small else None


def forward(net, ws, x):
    """Run the forward pass of the (m, n_in) batch ``x``; return the output aᴸ (m, units).

    Products use ``np.dot``, not ``np.matmul``: both hand 2-D operands to the same BLAS
    gemm/gemv call (bit-identical; tests/engine/test_speed_paths.py checks), and ``dot``
    costs about 1 µs less per call (eleven calls per step for three layers).
    """
    a = x
    dot = np.dot
    for W, b, z, out, activation, alpha in ws.forward_plan:
        dot(a, W, out=z)
        z += b
        activation(z, out, alpha)
        a = out
    return a


def backward(net, ws, x, y, loss_delta, loss_params, scale, gW, gb):
    """Back-propagate from the output; write scale·∂L_sum/∂Wˡ, ∂L_sum/∂bˡ into ``gW``, ``gb``.

    ``loss_delta`` is a LOSSES entry's delta function; ``scale`` is 1/m (times the
    learning rate when the optimizer folds it in). ``ws`` must hold the forward pass.
    """
    L, dot = net.depth, np.dot  # dot, not matmul: see forward
    delta = ws.delta[-1]
    loss_delta(ws.z[-1], ws.a[-1], y, loss_params, delta, scale, net.out_derivative)
    for l in range(L - 1, -1, -1):
        a_prev = ws.a[l - 1] if l > 0 else x
        dot(a_prev.T, delta, out=gW[l])
        # 1ᵀδ as a matrix-vector product: BLAS beats a column sum here.
        dot(ws.ones, delta, out=gb[l])
        if l > 0:
            prev = ws.delta[l - 1]
            dot(delta, net.W[l].T, out=prev)
            net.derivative_fns[l - 1](prev, ws.z[l - 1], ws.a[l - 1], net.alphas[l - 1])
            delta = prev
