"""Per-epoch telemetry accumulators, fed once per step from arrays already computed.

Sums over the epoch's steps live in small float64 arrays (checkpointed mid-epoch), so
a record is the sums divided by the step count. Definitions are in docs/engine.md.
"""
import numpy as np

from .activations import RELU_FAMILY
from .records import EpochRecord, LayerRecord

SATURATION = {"sigmoid": (0.5, 0.49), "tanh": (0.0, 0.99)}  # centre, |a - centre| beyond this


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
        # One step's squared sums, [grads W¹,b¹,... | δ¹.. | weights W¹,b¹,.. | updates W¹,b¹,..],
        # so scaling and square roots take one call each.
        self.sq = np.zeros(7 * L, net.dtype)
        self.g_sq, self.d_sq = self.sq[:2 * L], self.sq[2 * L:3 * L]
        self.w_sq, self.u_sq = self.sq[3 * L:5 * L], self.sq[5 * L:]
        self.norms = np.zeros(3 * L)      # Σ_steps [‖∂L/∂W‖, ‖∂L/∂b‖ interleaved | RMS‖δ_i‖]
        self.grad, self.delta = self.norms[:2 * L], self.norms[2 * L:]
        self._ratio_step = np.zeros(L, net.dtype)
        self._tiny = np.finfo(net.dtype).tiny
        self.ratio = np.zeros(L)          # Σ_steps ‖ΔW‖/‖W‖
        self.saturated = np.zeros(L)      # Σ count of saturated activations
        self.peak = [np.full(u, -np.inf, net.dtype) if a in RELU_FAMILY else None
                     for a, u in zip(net.activations, net.sizes[1:])]
        self.steps = 0
        self.activations_seen = 0         # Σ batch sizes (for saturation fractions)

    def reset(self):
        for arr in (self.norms, self.ratio, self.saturated):
            arr[...] = 0.0
        for p in self.peak:
            if p is not None:
                p[...] = -np.inf
        self.steps = 0
        self.activations_seen = 0

    def add_norms(self, scale):
        """Add one step's norms from ``sq`` (filled by the trainer) times ``scale`` (squared factors)."""
        L = len(self.acts)
        sq = self.sq
        np.multiply(sq, scale, out=sq)
        np.sqrt(sq, out=sq)
        self.norms += sq[:3 * L]
        np.divide(sq[5 * L::2], np.maximum(sq[3 * L:5 * L:2], self._tiny), out=self._ratio_step)
        self.ratio += self._ratio_step
        self.steps += 1

    def add_activations(self, ws):
        """Track dead (relu family: max over the epoch ≤ 0) and saturated units for this batch."""
        for l, act in enumerate(self.acts):
            a = ws.a[l]
            if self.peak[l] is not None:
                np.maximum(self.peak[l], a.max(axis=0), out=self.peak[l])
            elif act in SATURATION:
                centre, width = SATURATION[act]
                self.saturated[l] += np.count_nonzero(np.abs(a - centre) > width) / a.shape[1]
        self.activations_seen += ws.m

    def arrays(self):
        """Return the accumulators as name -> array, for checkpoints."""
        out = {"tel_norms": self.norms, "tel_ratio": self.ratio,
               "tel_saturated": self.saturated,
               "tel_counts": np.array([self.steps, self.activations_seen], np.int64)}
        out.update({f"tel_peak{l}": p for l, p in enumerate(self.peak) if p is not None})
        return out

    def load(self, arrays):
        for name, arr in self.arrays().items():
            if name != "tel_counts":
                np.copyto(arr, arrays[name])
        self.steps, self.activations_seen = (int(v) for v in arrays["tel_counts"])

    def layer_records(self, weight_sq):
        """Build LayerRecords from the sums; ``weight_sq`` holds ‖Wˡ‖², ‖bˡ‖² at epoch end."""
        n = max(self.steps, 1)
        # One conversion to Python floats for all layers: records are built every epoch.
        gw, gb, delta = (self.grad[0::2] / n).tolist(), (self.grad[1::2] / n).tolist(), (self.delta / n).tolist()
        ratio, wn = (self.ratio / n).tolist(), np.sqrt(weight_sq[0::2].astype(np.float64)).tolist()
        records = []
        for l, act in enumerate(self.acts):
            dead = sat = None
            if self.peak[l] is not None:
                dead = np.count_nonzero(self.peak[l] <= 0) / self.peak[l].size
            elif act in SATURATION:
                sat = float(self.saturated[l]) / max(self.activations_seen, 1)
            records.append(LayerRecord(l + 1, gw[l], gb[l], delta[l], wn[l], ratio[l], dead, sat))
        return records


def make_record(epoch, train_loss, val_loss, train_acc, val_acc, lr, seconds, layers):
    """Assemble an EpochRecord with plain Python numbers."""
    return EpochRecord(epoch=epoch, train_loss=float(train_loss),
                       val_loss=None if val_loss is None else float(val_loss),
                       train_accuracy=None if train_acc is None else float(train_acc),
                       val_accuracy=None if val_acc is None else float(val_acc),
                       learning_rate=float(lr), seconds=float(seconds), layers=layers)
