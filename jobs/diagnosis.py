"""Automatic diagnosis: flags raised from a job's stored telemetry.

Each flag names the epoch its condition started (`epoch`), the epoch it stopped holding
(`until`, null while it holds) and explains itself in one line; only a code's earliest
occurrence is reported. Thresholds and their reasoning are in docs/diagnosis.md.

Cost: the detectors are fed columns, a chunk of epochs at a time, from one statement
per chunk (the losses and every layer's values of those epochs), compiled once; the
per-layer conditions are numpy comparisons over a chunk's layer columns. A chunk holds
at most READ_CHUNK_ROWS layers' values, so a first pass over a long history of a wide
network holds a few MiB at a time. Detector state is cached per process and fed only
the epochs recorded since the previous call, so a poll of a running job reads only what
is new (one small read, however many layers).
"""
from __future__ import annotations

import copy
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from jobs.layer_values import unpack
from jobs.metric_reader import Prepared
from jobs.models import EpochMetric, Job
from mlp.records import LAYER_FIELDS

VANISHING_RATIO = 1e-2     # ‖δ¹‖ / ‖δᴸ‖ below this: the first layer hears < 1 % of the error
EXPLODING_RATIO = 1e2      # ... above this: the error is amplified 100× on the way back
EXPLODING_GROWTH = 1e3     # a layer's ‖∂L/∂W‖ grown 1000× above its first recorded value
DEAD_FRACTION = 0.5        # half of a ReLU-family layer's units never active in an epoch
SATURATED_FRACTION = 0.5   # half of a hidden sigmoid/tanh layer's activations saturated
SUSTAIN = 10               # recorded epochs a layer condition must hold to be flagged
PLATEAU_WINDOW = 50        # recorded epochs without a 1 % improvement of the best loss
PLATEAU_IMPROVEMENT = 0.01
PLATEAU_UNLEARNED = 0.5    # ... while the best loss is still above half the first one
OSCILLATION_WINDOW = 10    # recorded epochs examined for a rising, oscillating loss
OSCILLATION_RISES = 3      # rises of the loss within the window
OSCILLATION_GROWTH = 2.0   # window mean against the best loss before the window
CACHE_JOBS = 512
READ_CHUNK_ROWS = 50_000   # layers' values (epochs x layers) per query

# The layer fields the conditions read, in the order of a chunk's columns
FIELDS = ("weight_grad_norm", "delta_norm", "dead_fraction", "saturated_fraction")
WEIGHT_GRAD, DELTA, DEAD, SATURATED = range(len(FIELDS))
_FIELD_AT = [LAYER_FIELDS.index(f) for f in FIELDS]
_EPOCHS = Prepared(select(EpochMetric.epoch, EpochMetric.train_loss, EpochMetric.layers)
                   .where(EpochMetric.job_id == bindparam("job_id"),
                          EpochMetric.epoch > bindparam("after"))
                   .order_by(EpochMetric.epoch).limit(bindparam("limit")))

RELU_FAMILY = ("relu", "leaky_relu", "elu")
SATURATING = ("sigmoid", "tanh")
FLAG_ORDER = ("divergence", "learning_rate_too_high", "exploding_gradients",
              "vanishing_gradients", "dead_relu", "saturated_units", "loss_plateau")


@dataclass
class Condition:
    """A per-layer condition: `test(layers)` gives, for a chunk's (layer, FIELDS, epoch)
    columns (NaN where a value is missing), where it holds and the value it shows."""

    key: str
    code: str
    layer: int
    sustain: int
    test: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    message: Callable[[float], str]

    def held(self, layers: np.ndarray) -> list[tuple[int, float]]:
        """(position in the chunk, value) of the epochs where the condition holds, in order."""
        with np.errstate(all="ignore"):  # NaN (a missing value) never holds
            mask, value = self.test(layers)
        return list(zip(np.flatnonzero(mask).tolist(), value[mask].tolist()))


@dataclass
class Run:
    """The current run of consecutive recorded epochs where a condition holds."""

    length: int = 0
    start: int = 0
    last: int = 0  # index (1-based, over all recorded epochs) of the run's last epoch


@dataclass
class Detectors:
    """The state of every detector after the recorded epoch `epoch`."""

    activations: list[str]
    epoch: int = 0
    rows_seen: int = 0
    flags: dict[str, dict] = field(default_factory=dict)
    open: dict[str, str] = field(default_factory=dict)  # condition key -> its flag's code
    runs: dict[str, Run] = field(default_factory=dict)
    conditions: list[Condition] | None = None
    first_loss: float | None = None
    best: float | None = None  # the best loss before the oscillation window
    plateau_anchor: tuple[float, int, int] | None = None  # (best loss, its epoch, its index)
    recent: deque = field(default_factory=lambda: deque(maxlen=OSCILLATION_WINDOW))

    def raise_flag(self, key: str, code: str, epoch: int, message: str,
                   layer: int | None = None) -> None:
        """Report `code` from `epoch` unless seen earlier; it stays open while `key` holds."""
        if code in self.flags and self.flags[code]["epoch"] <= epoch:
            return
        self.flags[code] = {"code": code, "epoch": epoch, "until": None, "layer": layer,
                            "message": message}
        self.open = {k: c for k, c in self.open.items() if c != code}
        self.open[key] = code

    def release(self, key: str, epoch: int) -> None:
        """The condition `key` stopped holding at `epoch`: close its flag there."""
        code = self.open.pop(key, None)
        if code is not None:
            self.flags[code]["until"] = epoch

    # ---- the loss curve, one recorded epoch at a time ----------------------------------

    def feed_loss(self, epoch: int, index: int, loss: float | None) -> None:
        if loss is None:
            return
        if self.first_loss is None:
            self.first_loss = loss
        self._oscillation(epoch, loss)
        self._plateau(epoch, index, loss)

    def _plateau(self, epoch: int, index: int, loss: float) -> None:
        anchor = self.plateau_anchor
        if anchor is None or loss < anchor[0] * (1 - PLATEAU_IMPROVEMENT):
            self.plateau_anchor = (loss, epoch, index)
            if self.open:
                self.release("plateau", epoch)
            return
        best, since, at = anchor
        if index - at >= PLATEAU_WINDOW and best > PLATEAU_UNLEARNED * self.first_loss:
            self.raise_flag("plateau", "loss_plateau", since,
                            f"the loss has stayed near {best:.4g} ({best / self.first_loss:.0%} "
                            f"of its first value) for {index - at} recorded epochs")

    def _oscillation(self, epoch: int, loss: float) -> None:
        recent = self.recent
        if len(recent) == OSCILLATION_WINDOW:  # the oldest leaves the window
            leaving = recent[0][1]
            self.best = leaving if self.best is None else min(self.best, leaving)
        recent.append((epoch, loss))
        before = self.best  # the best loss recorded before the window
        if before is None or len(recent) < OSCILLATION_WINDOW:
            return
        mean = sum(v for _, v in recent) / OSCILLATION_WINDOW
        if mean < OSCILLATION_GROWTH * before or mean - before < 0.01 * self.first_loss:
            if self.open:
                self.release("oscillation", epoch)
            return
        losses = [v for _, v in recent]
        rises = sum(b > a for a, b in pairwise(losses))
        if rises < OSCILLATION_RISES:
            if self.open:
                self.release("oscillation", epoch)
            return
        self.raise_flag("oscillation", "learning_rate_too_high", recent[0][0],
                        f"the loss rose in {rises} of the last {len(losses) - 1} recorded "
                        f"epochs, to {mean / before:.1f}× its best: steps overshoot the "
                        "minimum; lower the learning rate")

    # ---- the layer conditions, from the epochs where each holds ---------------------

    def feed_condition(self, cond: Condition, held: list, epochs: list[int]) -> None:
        """`held`: (position, value) of the epochs where `cond` holds, among the chunk
        `epochs`, whose first has index `self.rows_seen + 1`."""
        base = self.rows_seen + 1
        run = self.runs.setdefault(cond.key, Run())
        for at, value in held:
            index = base + at
            if run.length and index != run.last + 1:
                self._end_run(cond, run, epochs, base)
            if not run.length:
                run.start = epochs[at]
            run.length, run.last = run.length + 1, index
            if run.length == cond.sustain:
                self.raise_flag(cond.key, cond.code, run.start, cond.message(value), cond.layer)
        if run.length and run.last < base + len(epochs) - 1:
            self._end_run(cond, run, epochs, base)

    def _end_run(self, cond: Condition, run: Run, epochs: list[int], base: int) -> None:
        self.release(cond.key, epochs[run.last + 1 - base])
        run.length = 0


def layer_conditions(job: Job, first_grads: np.ndarray) -> list[Condition]:
    """Every per-layer condition of this job's network (see the table in docs/diagnosis.md);
    `first_grads`: each layer's ‖∂L/∂W‖ at the first recorded epoch (NaN: not recorded)."""
    layers = job.spec["network"]["layers"]
    depth = len(layers)
    conditions = _ratio_conditions(depth) if depth >= 2 else []
    for i, layer in enumerate(layers, start=1):
        act, first = layer["activation"], float(first_grads[i - 1])
        if first == first and first != 0:  # recorded, and not 0
            conditions.append(_growth(i, first))
        if act in RELU_FAMILY:
            conditions.append(_fraction(i, DEAD, DEAD_FRACTION, "dead_relu",
                                        lambda v, i=i, a=act: (
                                            f"{v:.0%} of layer {i}'s {a} units output 0 for "
                                            "every sample: they pass no gradient and cannot "
                                            "recover")))
        elif act in SATURATING and i < depth:  # a confident output saturates by design
            conditions.append(_fraction(i, SATURATED, SATURATED_FRACTION, "saturated_units",
                                        lambda v, i=i, a=act: (
                                            f"{v:.0%} of layer {i}'s {a} activations are "
                                            "saturated: their derivative is near 0 and the "
                                            "error stops there")))
    return conditions


def _ratio_conditions(depth: int) -> list[Condition]:
    def test(holds):
        def ratio(layers):
            first, out = layers[0, DELTA], layers[depth - 1, DELTA]
            return (out > 0) & holds(first, out), first / out
        return ratio

    return [
        Condition("vanishing", "vanishing_gradients", 1, SUSTAIN,
                  test(lambda a, b: a < VANISHING_RATIO * b),
                  lambda v: f"the error reaching layer 1 is {v:.1e} of the output layer's "
                            f"(‖δ¹‖/‖δᴸ‖ < {VANISHING_RATIO:g} for {SUSTAIN} recorded epochs): "
                            "early layers barely learn"),
        Condition("exploding", "exploding_gradients", 1, SUSTAIN,
                  test(lambda a, b: a > EXPLODING_RATIO * b),
                  lambda v: f"the error grows {v:.1e}× on its way back to layer 1 "
                            f"(‖δ¹‖/‖δᴸ‖ > {EXPLODING_RATIO:g} for {SUSTAIN} recorded epochs)"),
    ]


def _growth(layer: int, first: float) -> Condition:
    def test(layers):
        grad = layers[layer - 1, WEIGHT_GRAD]
        return grad > EXPLODING_GROWTH * first, grad / first
    return Condition(
        f"grown{layer}", "exploding_gradients", layer, 1, test,
        lambda v: f"layer {layer}'s weight gradient grew {v:.1e}× above its first recorded norm")


def _fraction(layer: int, field: int, threshold: float, code: str,
              message: Callable[[float], str]) -> Condition:
    def test(layers):
        value = layers[layer - 1, field]
        return value >= threshold, value
    return Condition(f"{code}{layer}", code, layer, SUSTAIN, test, message)


@dataclass
class _Cached:
    """One job's detectors, what their last advance found, and who may advance them."""

    state: Detectors
    # (flags by code, epochs examined), replaced whole after each advance so that readers
    # never see a half-fed state.
    snapshot: tuple[dict[str, dict], int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_cache: OrderedDict[str, _Cached] = OrderedDict()
_lock = threading.Lock()


def diagnose(session: Session, job: Job) -> dict:
    """The job's flags, ordered by the epoch they started; cheap on repeated polls.

    Concurrent polls of one job share its detectors: one request reads the new epochs
    while the others answer from the previous advance (behind by at most the epochs
    being read; `epochs_examined` says how far it got) instead of waiting for it or
    starting over from epoch 1. Only the very first diagnosis of a job waits.
    """
    entry = _entry(job)
    # The worker commits metric rows and the job's progress together, so nothing newer
    # than `job.epoch` is recorded yet: no query at all while a job has not moved.
    stale = entry.snapshot is None or (job.epoch or 0) > entry.snapshot[1]
    if stale and entry.lock.acquire(blocking=entry.snapshot is None):
        try:
            _advance(session, job, entry.state)
            entry.snapshot = (copy.deepcopy(entry.state.flags), entry.state.epoch)
        except BaseException:
            # A chunk may be half fed: start this job over on its next poll.
            with _lock:
                if _cache.get(job.id) is entry:
                    del _cache[job.id]
            raise
        finally:
            entry.lock.release()
    found, examined = entry.snapshot
    flags = dict(found)
    divergence = divergence_flag(job)
    if divergence is not None:
        flags[divergence["code"]] = divergence
    ordered = sorted(flags.values(), key=lambda f: (f["epoch"], FLAG_ORDER.index(f["code"])))
    return {"flags": copy.deepcopy(ordered), "epochs_examined": examined}


def _entry(job: Job) -> _Cached:
    """The job's cache entry, made on first use; the least recently used ones leave."""
    with _lock:
        entry = _cache.pop(job.id, None)
        if entry is None:
            entry = _Cached(Detectors([layer["activation"]
                                       for layer in job.spec["network"]["layers"]]))
        _cache[job.id] = entry
        while len(_cache) > CACHE_JOBS:
            _cache.popitem(last=False)
    return entry


def _advance(session: Session, job: Job, state: Detectors) -> None:
    """Feed the detectors every epoch recorded after `state.epoch`, a chunk at a time."""
    for epochs, losses, layers in _chunks(session, job, state.epoch):
        if state.conditions is None:
            state.conditions = layer_conditions(job, layers[:, WEIGHT_GRAD, 0])
        for cond in state.conditions:
            state.feed_condition(cond, cond.held(layers), epochs)
        for i, (epoch, loss) in enumerate(zip(epochs, losses), start=state.rows_seen + 1):
            state.feed_loss(epoch, i, loss)
        state.epoch, state.rows_seen = epochs[-1], state.rows_seen + len(epochs)


def _chunks(session: Session, job: Job,
            after: int) -> Iterator[tuple[list[int], list[float | None], np.ndarray]]:
    """(epochs, train losses (None: non-finite), (layer, FIELDS, epoch) columns with NaN
    for a missing value) of the epochs recorded after `after`, READ_CHUNK_ROWS layers'
    values at a time."""
    n_layers = len(job.spec["network"]["layers"])
    limit = max(1, READ_CHUNK_ROWS // n_layers)
    while True:
        rows = _EPOCHS.rows(session, job_id=job.id, after=after, limit=limit)
        if not rows:
            return
        epochs, losses, blobs = (list(column) for column in zip(*rows))
        yield epochs, losses, unpack(blobs, n_layers)[:, :, _FIELD_AT].transpose(1, 2, 0)
        if len(rows) < limit:
            return  # that was everything recorded so far
        after = epochs[-1]


def divergence_flag(job: Job) -> dict | None:
    if job.status != "failed" or not job.error or "diverged" not in job.error:
        return None
    found = re.search(r"epoch (\d+)", job.error)
    epoch = int(found.group(1)) if found else job.epoch
    return {"code": "divergence", "epoch": epoch, "until": None, "layer": None,
            "message": f"training stopped: {job.error}"}
