"""Minibatch training: the epoch loop, one step, early stopping, checkpoints.

A stop requested through ``should_stop`` is honoured before any minibatch; the state
then saved holds the batch position, the RNG state from the start of the epoch (so
the same permutation is redrawn on resume) and the epoch's partial accumulators, so
resuming mid-epoch is bit-identical to never stopping (docs/engine.md, "Checkpoints").
"""
import math
import time

import numpy as np

from .data_split import BatchRows, EpochBatches, prepare_data
from .epoch_order import OrderBlock, epochs_per_block
from .blas_threads import single_thread, wants_single_thread
from .errors import DivergenceError, SpecError
from .losses import LOSSES
from .model import EVAL_CHUNK, Model, count_correct
from .network import SMALL_ARRAY, Network, Workspace, backward, forward
from .optimizers import OPTIMIZERS
from .records import FitResult
from .schedules import SCHEDULES
from .spec import validate_spec
from .telemetry import EpochTelemetry, make_record, segment_sq_norms
from .trainer_state import dump_state, load_state


class Trainer:
    """Train the network described by a validated spec on X (n, d) and y."""

    def __init__(self, spec, X, y, *, n_classes=None, X_val=None, y_val=None):
        self._setup(spec, X, y, n_classes, X_val, y_val)
        self.net.initialise(self._init_rng, self.spec["network"]["init"])

    @classmethod
    def from_state(cls, spec, X, y, state, *, n_classes=None, X_val=None, y_val=None):
        """Rebuild a trainer from ``state_bytes()`` output, on the same spec and data."""
        self = cls.__new__(cls)
        self._setup(spec, X, y, n_classes, X_val, y_val)
        self._load(state)
        return self

    def _setup(self, spec, X, y, n_classes, X_val, y_val):
        """Validate, prepare the data, and build the network, optimizer and buffers."""
        self.spec = spec = validate_spec(spec)
        t = spec["training"]
        if not isinstance(t["seed"], int):
            raise SpecError([("training.seed", "training needs an integer seed")])
        self.dtype, self.n_classes = np.dtype(t["dtype"]), n_classes
        data = prepare_data(spec, X, y, n_classes, X_val, y_val, self.dtype)
        self.X, self.T, self.labels, self.Xv, self.Tv, self.labels_v, self.squeeze, init_ss, shuffle_ss = data
        layers = spec["network"]["layers"]
        self.net = Network(self.X.shape[1], [l["activation"] for l in layers], [l["units"] for l in layers],
                           [l.get("alpha", 0.0) for l in layers], self.dtype)
        self._init_rng = np.random.Generator(np.random.PCG64(init_ss))
        self.rng = np.random.Generator(np.random.PCG64(shuffle_ss))
        self._check_early_stopping()
        self.optimizer = OPTIMIZERS[spec["optimizer"]["name"]](spec["optimizer"], self.net.n_params, self.dtype)
        self._loss_value, self._loss_delta = LOSSES[spec["loss"]["name"]]
        self._loss_params, self._clip = spec["loss"], t["gradient_clip_norm"]
        self._one_thread = wants_single_thread(self.net.sizes, t["batch_size"])
        self._allocate()
        self._reset_progress()

    def _allocate(self):
        """Allocate the buffers reused by every step: gradients, shuffled data, scratch."""
        net = self.net
        self._workspaces, self._scales, self._sides = {}, {}, {}
        self._scratch = np.empty(net.n_params, self.dtype) if net.n_params <= SMALL_ARRAY else None
        self._joint = self._allocate_joint()
        if self._joint is None:
            self.grads = np.zeros(net.n_params, self.dtype)
        self.gWb = net.augmented_views(self.grads)
        self.telemetry = EpochTelemetry(net)
        self._wsq = np.zeros(2 * net.depth, self.dtype)
        # A big X is gathered per minibatch into one reused buffer (data_split.BatchRows).
        batches = self.X.batches(self.spec["training"]["batch_size"]) if isinstance(self.X, BatchRows) else None
        # Otherwise the rows carry a column of ones (network.py: the bias rides in the
        # weight matrix), so a batch is a slice with no per-step copy. Gathering whole rows
        # of this copy is about 2.5x faster than gathering X into a strided view.
        self._Xa = None
        if batches is None:
            self._Xa = np.ones((len(self.X), self.X.shape[1] + 1), self.dtype)
            self._Xa[:, :-1] = self.X
        self._orders = None
        if self.spec["training"]["shuffle"] and batches is None:
            K = epochs_per_block(len(self.X), self._Xa.shape[1] + self.T[:1].size)
            self._orders = OrderBlock(self._Xa, self.T, self.labels, K) if K > 1 else None
        if self._orders is not None:
            self._Xp, self._Tp, self._Lp = self._Xa, self.T, self.labels  # views set per epoch
        elif self.spec["training"]["shuffle"]:
            self._Xp = batches if batches is not None else np.empty_like(self._Xa)
            self._Tp = np.empty_like(self.T)
            self._Lp = None if self.labels is None else np.empty_like(self.labels)
        else:
            self._Xp, self._Tp, self._Lp = self._Xa if batches is None else batches, self.T, self.labels
        es = self.spec["training"]["early_stopping"]
        self._best_params = np.empty_like(net.params) if es and es["restore_best"] else None

    def _allocate_joint(self):
        """For a small network, place weights, gradients and the full batch's δ side by side
        in one buffer, so that a step's squared norms need no copy; return
        (buffer, scratch of its size, segment starts, the batch's Workspace) or None.
        """
        m = min(self.spec["training"]["batch_size"], len(self.X))
        n, d = self.net.n_params, m * sum(self.net.sizes[1:])
        if self._scratch is None or d > SMALL_ARRAY:
            return None
        joint = np.zeros(2 * n + d, self.dtype)
        self.net.place(joint[:n])
        self.grads = joint[n:2 * n]
        ws = self._workspaces[m] = Workspace(self.net, m, delta_flat=joint[2 * n:])
        starts = np.concatenate([self.net.segments, n + self.net.segments, 2 * n + ws.delta_segments])
        return joint, np.empty_like(joint), starts, ws

    def _reset_progress(self):
        """Set the progress a checkpoint records (trainer_state.SCALARS) to a fresh start."""
        self.epoch, self.pos, self._in_epoch, self._finished = 0, 0, False, False
        self._epoch_rng_state = None
        self._loss_sum, self._n_seen, self._correct, self._elapsed = 0.0, 0, 0, 0.0
        self._best_value = self._best_epoch = self._best_val_loss = None
        self._wait, self._early_stopped, self._last_record = 0, False, None

    def _check_early_stopping(self):
        es = self.spec["training"]["early_stopping"]
        if es is None:
            return
        if es["monitor"].startswith("val_") and self.Xv is None:
            raise SpecError([("training.early_stopping.monitor",
                              f"monitors {es['monitor']} but there is no validation data; set training.validation_split > 0")])
        if es["monitor"] == "val_accuracy" and self.n_classes is None:
            raise SpecError([("training.early_stopping.monitor", "val_accuracy needs a classification dataset")])

    # ---- the training loop -------------------------------------------------------

    def fit(self, on_epoch=None, should_stop=None):
        """Train until the last epoch, early stopping, or ``should_stop()`` returning True."""
        # Non-finite values are caught explicitly per step, hence errstate.
        with np.errstate(all="ignore"), single_thread(self._one_thread):
            while not self._finished:
                if not self._in_epoch:
                    self._begin_epoch()
                started = time.perf_counter()
                lr = self.learning_rate()
                stopped = self._run_batches(lr, should_stop)
                self._elapsed += time.perf_counter() - started
                if stopped:
                    return self._result(stopped=True)
                record = self._end_epoch(lr)
                if record is not None:
                    self._last_record = record
                    if on_epoch is not None:
                        on_epoch(record)
        return self._result(stopped=False)

    def learning_rate(self):
        """Return the scheduled learning rate of the current (0-based ``epoch``) epoch."""
        opt = self.spec["optimizer"]
        return SCHEDULES[opt["schedule"]["name"]](opt["learning_rate"], self.epoch, opt["schedule"])

    def _begin_epoch(self):
        if self._orders is not None:
            self._Xp, self._Tp, self._Lp = self._orders.views(self.rng, self.epoch)
        else:
            self._epoch_rng_state = self.rng.bit_generator.state
            self._draw_order()
        self.telemetry.reset()
        self._loss_sum, self._n_seen, self._correct, self._elapsed = 0.0, 0, 0, 0.0
        self.pos, self._in_epoch = 0, True

    def _draw_order(self):
        """Draw the epoch's permutation and gather the rows once into reused buffers
        (datasets too big for an OrderBlock)."""
        if not self.spec["training"]["shuffle"]:
            return
        perm = self.rng.permutation(len(self.X))
        if isinstance(self._Xp, EpochBatches):
            self._Xp.order = perm  # _step's self._Xp[lo:hi] gathers the batch's rows
        else:
            # mode="clip" skips the bounds-check pass; perm is in range by construction.
            self._Xa.take(perm, axis=0, out=self._Xp, mode="clip")
        self.T.take(perm, axis=0, out=self._Tp, mode="clip")
        if self._Lp is not None:
            self.labels.take(perm, axis=0, out=self._Lp, mode="clip")

    def _telemetry_on(self):
        # Per-step telemetry only in epochs that may be recorded: every recorded
        # epoch, the last, and every epoch when early stopping may end the run.
        e, t = self.epoch + 1, self.spec["training"]
        return (t["early_stopping"] is not None or e % self.spec["record"]["every_epochs"] == 0
                or e == t["epochs"])

    def _run_batches(self, lr, should_stop):
        fold = lr if (self.optimizer.folds_lr and lr > 0) else 1.0
        telem, n, B, step = self._telemetry_on(), len(self.X), self.spec["training"]["batch_size"], self._step
        while self.pos < n:
            if should_stop is not None and should_stop():
                return True
            hi = min(self.pos + B, n)
            step(self.pos, hi, lr, fold, telem)
            self.pos = hi
        return False

    def _workspace(self, m):
        ws = self._workspaces.get(m)
        if ws is None:
            ws = self._workspaces[m] = Workspace(self.net, m)
        return ws

    def _step(self, lo, hi, lr, fold, telem):
        """One minibatch: forward, loss, backward, checks, telemetry, optimizer update."""
        net, m, tel = self.net, hi - lo, self.telemetry
        ws, x, t = self._workspace(m), self._Xp[lo:hi], self._Tp[lo:hi]
        out = forward(net, ws, x)
        loss = self._loss_value(ws.z[-1], out, t, self._loss_params)
        backward(net, ws, t, self._loss_delta, self._loss_params, fold / m, self.gWb)
        gsq = self._sq_norms(ws, telem)
        # In Python: cheaper than ndarray.sum for a handful of values (one per tensor).
        total = sum(gsq.tolist())
        if not (math.isfinite(loss) and math.isfinite(total)):
            self._diverged(loss, gsq)
        self._loss_sum += loss * m
        self._n_seen += m
        if self._Lp is not None:
            self._correct += count_correct(out, self._Lp[lo:hi])
        if telem:
            tel.add_activations(ws)
        clip = self._clip
        clipped = clip is not None and math.sqrt(total) / fold > clip
        if clipped:
            self.grads *= clip / (math.sqrt(total) / fold)
        u, s = self.optimizer.step(net.params, self.grads, lr)
        if telem:
            if u is self.grads and not clipped and not self.optimizer.wd:
                np.copyto(tel.u_sq, gsq)  # plain SGD: the step is the (lr-folded) gradient
            else:
                segment_sq_norms(u, net.segments, tel.u_sq, self._scratch)
            tel.add_norms(self._norm_scale(m, fold, s))

    def _sq_norms(self, ws, telem):
        """Write the step's squared gradient norms (and, with ``telem``, those of the weights
        and δ) into the telemetry buffer; return the gradient part.

        A small network copies weights, gradients and δ side by side and reduces them in
        one ``reduceat`` (three numpy calls instead of six).
        """
        net, tel = self.net, self.telemetry
        if not telem:
            return segment_sq_norms(self.grads, net.segments, tel.g_sq, self._scratch)
        if self._scratch is None or ws.scratch is None:
            segment_sq_norms(ws.delta_flat, ws.delta_segments, tel.d_sq, ws.scratch)
            segment_sq_norms(net.params, net.segments, tel.w_sq, self._scratch)
            return segment_sq_norms(self.grads, net.segments, tel.g_sq, self._scratch)
        if self._joint is not None and self._joint[3] is ws:
            side, squares, starts, _ = self._joint  # already side by side
        else:
            squares, starts = self._side_by_side(ws)
            np.concatenate((net.params, self.grads, ws.delta_flat), out=squares)
            side = squares
        np.multiply(side, side, out=squares)
        np.add.reduceat(squares, starts, out=tel.sq[2 * net.depth:7 * net.depth])
        return tel.g_sq

    def _side_by_side(self, ws):
        """Return the (buffer, segment starts) holding [weights | gradients | δ] for batch size ``ws.m``."""
        entry = self._sides.get(ws.m)
        if entry is None:
            n = self.net.n_params
            starts = np.concatenate([self.net.segments, n + self.net.segments, 2 * n + ws.delta_segments])
            entry = self._sides[ws.m] = (np.empty(2 * n + ws.delta_flat.size, self.dtype), starts)
        return entry

    def _norm_scale(self, m, fold, s):
        """Return the factors that turn the step's squared sums into the defined norms, squared.

        Gradients and δ carry the fold factor (lr for SGD) and δ also 1/m; updates are
        ``s·u``. See docs/engine.md for the definitions.
        """
        key = (m, fold, s)
        scale = self._scales.get(key)
        if scale is None:
            L = self.net.depth
            scale = np.concatenate([np.full(2 * L, s * s), np.ones(2 * L), np.full(2 * L, fold ** -2),
                                    np.full(L, m / fold ** 2), np.ones(L)]).astype(self.dtype)
            self._scales[key] = scale
        return scale

    def _diverged(self, loss, gsq):
        layer = None
        for l in range(self.net.depth - 1, -1, -1):  # the order the backward pass ran
            if not (np.isfinite(gsq[2 * l]) and np.isfinite(gsq[2 * l + 1])):
                layer = l + 1
                break
        if not math.isfinite(loss):
            raise DivergenceError(self.epoch + 1, "loss", str(loss), layer)
        bad = gsq[2 * layer - 2:2 * layer]
        raise DivergenceError(self.epoch + 1, "gradient", "nan" if np.isnan(bad).any() else "inf", layer)

    # ---- epoch end, early stopping -------------------------------------------------

    def _end_epoch(self, lr):
        t = self.spec["training"]
        self.epoch += 1
        self._in_epoch, self.pos = False, 0
        recorded = self.epoch % self.spec["record"]["every_epochs"] == 0 or self.epoch == t["epochs"]
        es = t["early_stopping"]
        val_loss = val_acc = None
        if self.Xv is not None and (recorded or es is not None):
            val_loss, val_acc = self.evaluate(self.Xv, self.Tv, self.labels_v)
        train_loss = self._loss_sum / max(self._n_seen, 1)
        train_acc = None if self.labels is None else self._correct / max(self._n_seen, 1)
        stop = self._track_best(val_loss, val_acc, train_loss)
        record = None
        if recorded or stop:
            wsq = segment_sq_norms(self.net.params, self.net.segments, self._wsq, self._scratch)
            record = make_record(self.epoch, train_loss, val_loss, train_acc, val_acc, lr,
                                 self._elapsed, self.telemetry.layer_sums(wsq))
        if stop or self.epoch == t["epochs"]:
            self._early_stopped = stop
            self._finished = True
            if self._best_params is not None and self._best_epoch is not None:
                np.copyto(self.net.params, self._best_params)
        return record

    def _track_best(self, val_loss, val_acc, train_loss):
        """Update the best epoch; return True when early stopping should end training."""
        es = self.spec["training"]["early_stopping"]
        if es is None:
            if val_loss is not None and (self._best_val_loss is None or val_loss < self._best_val_loss):
                self._best_epoch, self._best_val_loss = self.epoch, val_loss
            return False
        value = {"val_loss": val_loss, "val_accuracy": val_acc, "train_loss": train_loss}[es["monitor"]]
        best = self._best_value
        if es["monitor"] == "val_accuracy":
            improved = best is None or value > best + es["min_delta"]
        else:
            improved = best is None or value < best - es["min_delta"]
        if improved:
            self._best_value, self._best_epoch, self._best_val_loss = value, self.epoch, val_loss
            self._wait = 0
            if self._best_params is not None:
                np.copyto(self._best_params, self.net.params)
            return False
        self._wait += 1
        return self._wait >= es["patience"]

    def evaluate(self, X, T, labels):
        """Return (mean loss, accuracy or None) of the current weights on prepared data."""
        total, correct = 0.0, 0
        for lo in range(0, len(X), EVAL_CHUNK):
            x, t = X[lo:lo + EVAL_CHUNK], T[lo:lo + EVAL_CHUNK]
            ws = self._workspace(len(x))
            out = forward(self.net, ws, x)
            total += self._loss_value(ws.z[-1], out, t, self.spec["loss"]) * len(x)
            if labels is not None:
                correct += count_correct(out, labels[lo:lo + EVAL_CHUNK])
        n = max(len(X), 1)
        return total / n, (None if labels is None else correct / n)

    def _result(self, stopped):
        return FitResult(epochs_run=self.epoch, stopped=stopped, early_stopped=self._early_stopped,
                         best_epoch=self._best_epoch, best_val_loss=self._best_val_loss,
                         final=self._last_record)

    def model(self):
        """Return a Model holding a copy of the current weights."""
        net = self.net
        return Model(list(zip(net.W, net.b)), net.activations, net.alphas, self.spec["loss"],
                     self.n_classes, self.squeeze)

    # ---- checkpoints (format in trainer_state.py) -------------------------------------

    def state_bytes(self):
        """Serialise the complete training state to npz bytes (no pickle)."""
        return dump_state(self)

    def _load(self, state):
        load_state(self, state)
