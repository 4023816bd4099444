"""Per-epoch telemetry accumulators, fed once per step from arrays already computed.

Sums over the epoch's steps live in small float64 arrays (checkpointed mid-epoch), so
a record is the sums divided by the step count. Definitions are in docs/engine.md.
"""

import numpy as np

from .activations import RELU_FAMILY
from .records import EpochRecord, LayerLayout, LayerSums

SATURATION = {"sigmoid": (0.5, 0.49), "tanh": (0.0, 0.99)}  # centre, |a - centre| beyond this
# Up to this many activations, saturated units are counted in Python: cheaper than numpy calls.
SMALL_COUNT = 32
# Up to this many hidden activations per batch, dead units are tracked with one elementwise
# maximum over all hidden layers per step (a copy of that size); above, per layer.
SMALL_BLOCK = 1 << 16


def saturation_bounds(centre, width, dtype):
    """Return (lo, hi) such that, for any value v of ``dtype``, numpy's
    ``abs(v - centre) > width`` (rounded in ``dtype``) holds exactly when v <= lo or v >= hi.

    v − centre rounds monotonically in v, so each side's saturated values form one
    interval; each edge is found by stepping one ulp at a time from centre ± width with
    the very expression it replaces, so the counts are exactly the same.
    """
    dtype = np.dtype(dtype).type

    def saturated(v):
        return bool(np.abs(np.array([v], dtype) - centre)[0] > width)

    def edge(start, outward):
        v = dtype(start)
        inward = -outward
        while not saturated(v):
            v = np.nextafter(v, dtype(outward))
        while saturated(np.nextafter(v, dtype(inward))):
            v = np.nextafter(v, dtype(inward))
        return float(v)

    return edge(centre - width, -np.inf), edge(centre + width, np.inf)


def count_saturated(a, lo, hi):
    """Count the entries of ``a`` that are <= lo or >= hi (NaN is neither)."""
    if a.size <= SMALL_COUNT:
        return sum(v <= lo or v >= hi for v in a.ravel().tolist())
    return np.count_nonzero(a <= lo) + np.count_nonzero(a >= hi)


def segment_sq_norms(flat, starts, out, scratch=None):
    """Write the squared 2-norm of each segment of ``flat`` (segments begin at ``starts``) into ``out``.

    With a ``scratch`` buffer (small networks) this is two numpy calls; without (large
    ones) one BLAS dot per segment, which reads the data once and writes nothing.
    """
    if scratch is not None:
        np.multiply(flat, flat, out=scratch)
        np.add.reduceat(scratch, starts, out=out)
        return out
    bounds = list(starts) + [flat.size]
    for i in range(len(starts)):
        seg = flat[bounds[i]:bounds[i + 1]]
        out[i] = np.dot(seg, seg)
    return out


class EpochTelemetry:
    """Sums of per-step quantities over the current epoch, per layer."""

    def __init__(self, net):
        L = net.depth
        self.acts = net.activations
        # Per layer: the (lo, hi) saturation bounds of sigmoid and tanh layers, else None.
        self._sat_bounds = [saturation_bounds(*SATURATION[a], net.dtype) if a in SATURATION else None
                            for a in net.activations]
        # One step's squared sums, [updates W¹,b¹,.. | weights W¹,b¹,.. | grads W¹,b¹,.. | δ¹.. | ratio¹..],
        # filled by the trainer. Weights, grads and δ are contiguous so that a small network
        # fills them with one reduction, and the last three blocks so that one call adds a
        # whole step to the sums (a tiny network's step is only ~40 numpy calls).
        self.sq = np.zeros(8 * L, net.dtype)
        self.u_sq, self.w_sq = self.sq[:2 * L], self.sq[2 * L:4 * L]
        self.g_sq, self.d_sq, self._ratio_step = self.sq[4 * L:6 * L], self.sq[6 * L:7 * L], self.sq[7 * L:]
        self._w_floor = np.empty(L, net.dtype)
        # Views used every step, made once (each slicing costs a tiny network ~0.2 µs).
        self._u_weights, self._w_weights, self._sq_sums = self.u_sq[::2], self.w_sq[::2], self.sq[4 * L:]
        self.acc = np.zeros(5 * L)        # Σ_steps of sq[4L:8L] | Σ count of saturated activations
        self.grad, self.delta = self.acc[:2 * L], self.acc[2 * L:3 * L]
        self._acc_sums = self.acc[:4 * L]
        self.ratio, self.saturated = self.acc[3 * L:4 * L], self.acc[4 * L:]
        relu = [a in RELU_FAMILY for a in net.activations]
        self.peak_flat = np.full(sum(u for r, u in zip(relu, net.sizes[1:]) if r), -np.inf, net.dtype)
        self.peak, start = [], 0
        for r, u in zip(relu, net.sizes[1:]):
            self.peak.append(self.peak_flat[start:start + u] if r else None)
            start += u if r else 0
        # (units in relu layers, relu layers) 0/1 matrix: a dot with the dead mask counts per layer.
        owners = [l for l, r in enumerate(relu) if r]
        self._peak_owner = np.zeros((self.peak_flat.size, len(owners)))
        start = 0
        for j, l in enumerate(owners):
            self._peak_owner[start:start + net.sizes[l + 1], j] = 1.0
            start += net.sizes[l + 1]
        # Hidden relu-family layers' rows in a Workspace's ``hidden`` block (units, m), and
        # the elementwise running maximum of that block over the epoch's steps, reduced
        # over samples only when the peaks are read (``_fold``). One maximum call per step
        # instead of two per layer; the maximum is exact, so the peaks are the same.
        starts = np.cumsum([0] + [u + 1 for u in net.sizes[1:-1]])
        self._block_rows = np.array([r for l in range(net.depth - 1) if relu[l]
                                     for r in range(starts[l], starts[l] + net.sizes[l + 1])], dtype=np.intp)
        # They come first in peak_flat (layer order), so their peaks are one slice of it.
        self._block_peak = self.peak_flat[:self._block_rows.size]
        self._pending, self._pending_empty = None, True
        self._no_dead = np.empty(0)
        self._ones = {}  # (batch size, dtype) -> ones, for _unit_peaks
        self.layout = LayerLayout([u if r else None for r, u in zip(relu, net.sizes[1:])],
                                  [a in SATURATION for a in net.activations])
        self._tiny = np.finfo(net.dtype).tiny
        self.steps = 0
        self.activations_seen = 0         # Σ batch sizes (for saturation fractions)

    def reset(self):
        self.acc.fill(0.0)
        self.peak_flat.fill(-np.inf)
        self._pending_empty = True
        self.steps = 0
        self.activations_seen = 0

    def add_norms(self, scale):
        """Add one step's norms from ``sq`` (filled by the trainer) times ``scale`` (squared factors)."""
        sq = self.sq
        np.multiply(sq, scale, out=sq)
        np.sqrt(sq, out=sq)
        w = np.maximum(self._w_weights, self._tiny, out=self._w_floor)
        np.divide(self._u_weights, w, out=self._ratio_step)
        self._acc_sums += self._sq_sums
        self.steps += 1

    def add_activations(self, ws):
        """Track dead (relu family: max over the epoch ≤ 0) and saturated units for this batch."""
        maximum = np.maximum
        block = self._block_rows.size and ws.hidden.size <= SMALL_BLOCK
        if block:
            self._add_block(ws)
        for l, (peak, bounds) in enumerate(zip(self.peak, self._sat_bounds)):
            a = ws.a[l]
            if peak is not None and not (block and l < len(self.acts) - 1):
                maximum(peak, self._unit_peaks(l, a), out=peak)
            elif bounds is not None:
                self.saturated[l] += count_saturated(a, *bounds) / a.shape[1]
        self.activations_seen += ws.m

    def _unit_peaks(self, l, a):
        """Return, per unit of layer l, a value that is <= 0 exactly when all of the batch's
        activations ``a`` (m, units) are: their maximum, or for relu (a >= 0) their sum,
        which one BLAS gemv reads about 4x faster (a sum of non-negative values is 0
        only if all are; NaN stays NaN, as in the maximum)."""
        if self.acts[l] != "relu":
            return np.maximum.reduce(a, axis=0)  # ufunc.reduce: ndarray.max has a Python wrapper
        ones = self._ones.get((a.shape[0], a.dtype))
        if ones is None:
            ones = self._ones[(a.shape[0], a.dtype)] = np.ones(a.shape[0], a.dtype)
        return np.dot(a.T, ones)

    def _add_block(self, ws):
        """Fold the batch's hidden block (rows, m) into the pending elementwise maxima."""
        pending = self._pending
        if pending is None or pending.shape[1] < ws.m:
            self._fold()
            pending = self._pending = np.empty_like(ws.hidden)
        if pending.shape[1] == ws.m and self._pending_empty:
            np.copyto(pending, ws.hidden)  # the first batch since a fold: no fill needed
        else:
            if self._pending_empty:
                pending.fill(-np.inf)
            if pending.shape[1] > ws.m:  # a smaller last batch
                pending = pending[:, :ws.m]
            np.maximum(pending, ws.hidden, out=pending)
        self._pending_empty = False

    def _fold(self):
        """Move the pending elementwise maxima into the per-unit peaks (max over samples)."""
        if self._pending_empty:
            return
        maximum = np.maximum
        rows = maximum.reduce(self._pending, axis=1)
        maximum(self._block_peak, rows[self._block_rows], out=self._block_peak)
        self._pending_empty = True

    def arrays(self):
        """Return the accumulators as name -> array, for checkpoints."""
        self._fold()
        return {"tel_acc": self.acc, "tel_peak": self.peak_flat,
                "tel_counts": np.array([self.steps, self.activations_seen], np.int64)}

    def load(self, arrays):
        for name, arr in self.arrays().items():
            if name != "tel_counts":
                np.copyto(arr, arrays[name])
        self._pending_empty = True  # the checkpoint's peaks include everything seen before it
        self.steps, self.activations_seen = (int(v) for v in arrays["tel_counts"])

    def layer_sums(self, weight_sq):
        """Return the epoch's per-layer telemetry as a LayerSums (records built when read);
        ``weight_sq`` holds ‖Wˡ‖², ‖bˡ‖² at epoch end."""
        self._fold()
        dead = (self.peak_flat <= 0).dot(self._peak_owner) if self.peak_flat.size else self._no_dead
        raw = np.concatenate((self.acc, weight_sq, dead), dtype=np.float64)
        return LayerSums(raw, self.layout, self.steps, self.activations_seen)


def make_record(epoch, train_loss, val_loss, train_acc, val_acc, lr, seconds, layers):
    """Assemble an EpochRecord with plain Python numbers."""
    return EpochRecord(epoch=epoch, train_loss=float(train_loss),
                       val_loss=None if val_loss is None else float(val_loss),
                       train_accuracy=None if train_acc is None else float(train_acc),
                       val_accuracy=None if val_acc is None else float(val_acc),
                       learning_rate=float(lr), seconds=float(seconds), layers=layers)
