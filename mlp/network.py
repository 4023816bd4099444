"""The network: layer shapes, one flat parameter vector, and the forward/backward passes.

Notation (docs/backprop.md): a⁰ = X (batch, n_in); for l = 1..L,
zˡ = aˡ⁻¹ Wˡ + bˡ and aˡ = fˡ(zˡ), with Wˡ of shape (fan_in, fan_out) and bˡ (fan_out,).
δˡ = ∂L/∂zˡ (batch, fan_out); ∂L/∂Wˡ = aˡ⁻¹ᵀ δˡ, ∂L/∂bˡ = 1ᵀ δˡ and
δˡ⁻¹ = (δˡ Wˡᵀ) ⊙ fˡ⁻¹'(zˡ⁻¹).

The bias rides in the weight matrix: the flat layout [Wˡ, bˡ] is, read row-major, the
(fan_in + 1, fan_out) matrix Ŵˡ = [Wˡ; bˡ], and every layer input carries an appended
column of ones, âˡ⁻¹ = [aˡ⁻¹, 1]. Then zˡ = âˡ⁻¹ Ŵˡ and ∂L/∂Ŵˡ = âˡ⁻¹ᵀ δˡ give the bias
term and its gradient inside the same BLAS product (two numpy calls fewer per layer).
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
    and so is ``Wb[l]``, the augmented (fan_in + 1, fan_out) matrix [Wˡ; bˡ], so an
    optimizer updates every layer in one whole-array operation.
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
        self._set_views()
        # Looked up once here rather than per layer per step (a tiny network's step is ~1 µs a call).
        self.forward_fns = [ACTIVATIONS[a] for a in self.activations]
        self.derivative_fns = [DERIVATIVES[a] for a in self.activations]
        self.out_derivative = functools.partial(self.derivative_fns[-1], alpha=self.alphas[-1])

    @property
    def depth(self):
        return len(self.activations)

    def views(self, flat):
        """Return lists of per-layer (fan_in, fan_out) and (fan_out,) views into ``flat``."""
        Wbs = self.augmented_views(flat)
        return [Wb[:-1] for Wb in Wbs], [Wb[-1] for Wb in Wbs]

    def augmented_views(self, flat):
        """Return the per-layer (fan_in + 1, fan_out) views [Wˡ; bˡ] into ``flat``."""
        return [flat[w:e].reshape(fi + 1, fo)
                for (w, _, e), fi, fo in zip(self.bounds, self.sizes[:-1], self.sizes[1:])]

    def _set_views(self):
        self.Wb = self.augmented_views(self.params)
        self.W, self.b = [Wb[:-1] for Wb in self.Wb], [Wb[-1] for Wb in self.Wb]

    def place(self, flat):
        """Move the parameters into ``flat`` (n_params,), a view of a larger buffer; W and b follow."""
        flat[...] = self.params
        self.params = flat
        self._set_views()

    def initialise(self, rng, init):
        """Draw weights (in float64, then cast, so both dtypes see the same draws); zero biases."""
        for W, b, act, fi, fo in zip(self.W, self.b, self.activations, self.sizes[:-1], self.sizes[1:]):
            W[...] = resolve_init(init, act)(rng, fi, fo)
            b[...] = 0.0


class Workspace:
    """Preallocated per-batch-size buffers for one forward and backward pass.

    Every layer works transposed, one column per sample: zˡᵀ, aˡᵀ and δˡᵀ are
    (units, m) C-contiguous buffers. A hidden layer's aˡᵀ is the first ``units`` rows of
    a (units + 1, m) block of ``hidden`` whose last row stays 1, so it is the next
    layer's augmented input with no copy; elementwise calls run on contiguous memory (a
    strided view costs about 1 µs more per call at 64×128), and the output's per-sample
    reductions (softmax) run across rows, which numpy vectorises (about 2x faster).
    ``z[l]``, ``a[l]`` and ``delta[l]`` are the (m, units) transposed views the losses,
    telemetry and traces read. ``z[l]`` and ``a[l]`` share a buffer when the activation
    can run in place (its derivative reads only the output; never for the output layer,
    nor with ``keep_z``, for traces). All δ buffers share one flat array so their norms
    take one reduction; ``delta_flat`` (m·Σunits,) may be given, to place them in a
    larger buffer. ``inputs`` (m, n_in + 1) holds the augmented batch when the caller
    passes it without the ones column.
    """

    def __init__(self, net, m, keep_z=False, delta_flat=None):
        self.m = m
        self.inputs = np.ones((m, net.sizes[0] + 1), net.dtype)
        self.input = self.inputs  # the augmented batch of the last forward pass
        units = net.sizes[1:]
        sizes = [m * fo for fo in units]
        self.delta_flat = np.empty(sum(sizes), net.dtype) if delta_flat is None else delta_flat
        self.delta_segments = np.cumsum([0] + sizes[:-1]).astype(np.intp)
        small = self.delta_flat.size <= SMALL_ARRAY
        self.scratch = np.empty_like(self.delta_flat) if small else None
        # All hidden layers' augmented activations in one block, so that telemetry can
        # take one elementwise maximum over all of them.
        self.hidden = np.ones((sum(fo + 1 for fo in units[:-1]), m), net.dtype)
        starts = np.cumsum([0] + [fo + 1 for fo in units[:-1]])
        blocks = [self.hidden[s:s + fo + 1] for s, fo in zip(starts, units[:-1])]
        a_t = [block[:-1] for block in blocks] + [np.empty((units[-1], m), net.dtype)]
        last = net.depth - 1
        z_t = [np.empty_like(a) if keep_z or l == last or act in NEEDS_Z else a
               for l, (a, act) in enumerate(zip(a_t, net.activations))]
        delta_t = [self.delta_flat[s:s + n].reshape(fo, m) for s, n, fo in zip(self.delta_segments, sizes, units)]
        self.z, self.a, self.delta = [z.T for z in z_t], [a.T for a in a_t], [d.T for d in delta_t]
        self.delta_t = delta_t
        # Per-layer arguments, gathered once (a tiny network's step is ~1 µs a numpy call).
        # Hidden activations are elementwise (spec.py allows softmax only on the output)
        # and take the transposed buffers; the output's take (m, units) views.
        act_args = [(z, a) for z, a in zip(z_t[:-1], a_t[:-1])] + [(self.z[-1], self.a[-1])]
        self.forward_plan = list(zip([Wb.T for Wb in net.Wb], z_t, act_args, blocks + [None],
                                     net.forward_fns, net.alphas))
        self.backward_plan = [(l, blocks[l - 1], net.W[l], delta_t[l - 1], z_t[l - 1], a_t[l - 1],
                               net.derivative_fns[l - 1], net.alphas[l - 1]) for l in range(last, 0, -1)]


def augment(ws, x):
    """Return the batch x (m, n_in) as (m, n_in + 1) with a ones column: x itself when it
    already has one (the trainer's gathered batches do), else a copy in ``ws.inputs``."""
    if x.shape[1] == ws.inputs.shape[1]:
        return x
    ws.inputs[:, :-1] = x
    return ws.inputs


def forward(net, ws, x):
    """Run the forward pass of the batch ``x`` (m, n_in), or (m, n_in + 1) with a last
    column of ones; return the output aᴸ (m, units), a transposed view.

    Each layer computes zˡᵀ = Ŵˡᵀ âˡ⁻¹ᵀ (units, m) straight into its buffer. The
    products use ``np.dot``, not ``np.matmul``: both hand 2-D operands (transposed
    views included) to the same BLAS gemm call, and ``dot`` costs about 1 µs less per call.
    """
    ws.input = augment(ws, x)
    a_t, dot = ws.input.T, np.dot
    for Wb_t, z_t, (z, a), augmented, activation, alpha in ws.forward_plan:
        dot(Wb_t, a_t, out=z_t)
        activation(z, a, alpha)
        a_t = augmented
    return ws.a[-1]


def backward(net, ws, y, loss_delta, loss_params, scale, gWb):
    """Back-propagate from the output; write scale·∂L_sum/∂Ŵˡ into ``gWb`` (the
    (fan_in + 1, fan_out) views [∂Wˡ; ∂bˡ] of ``net.augmented_views(grads)``).

    ``loss_delta`` is a LOSSES entry's delta function; ``scale`` is 1/m (times the
    learning rate when the optimizer folds it in). ``ws`` must hold the forward pass.
    """
    dot = np.dot  # dot, not matmul: see forward
    loss_delta(ws.z[-1], ws.a[-1], y, loss_params, ws.delta[-1], scale, net.out_derivative)
    delta_t = ws.delta_t[-1]
    for l, a_in_t, W, prev_t, z_t, a_t, derivative, alpha in ws.backward_plan:
        # âˡ⁻¹ᵀ δˡ: the weight gradient with the bias gradient 1ᵀδˡ as its last row.
        dot(a_in_t, delta_t.T, out=gWb[l])
        # δˡ⁻¹ᵀ = Wˡ δˡᵀ, with Wˡ the contiguous view of Ŵˡ without its bias row.
        dot(W, delta_t, out=prev_t)
        derivative(prev_t, z_t, a_t, alpha)
        delta_t = prev_t
    dot(ws.input.T, delta_t.T, out=gWb[0])
