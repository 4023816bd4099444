"""Automatic diagnosis: flags raised from a job's stored telemetry.

Each flag names the epoch its condition started (`epoch`), the epoch it stopped holding
(`until`, null while it holds) and explains itself in one line; only a code's first
occurrence is reported. The
detectors are streaming state machines fed one recorded epoch at a time, and their state
is cached per process, so a poll of a running job reads only the epochs recorded since
the previous poll. Thresholds and their reasoning are in docs/diagnosis.md.
"""
from __future__ import annotations

import copy
import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.models import EpochMetric, Job, LayerMetric

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
READ_CHUNK = 5000          # epochs read per query

RELU_FAMILY = ("relu", "leaky_relu", "elu")
SATURATING = ("sigmoid", "tanh")
FLAG_ORDER = ("divergence", "learning_rate_too_high", "exploding_gradients",
              "vanishing_gradients", "dead_relu", "saturated_units", "loss_plateau")


@dataclass
class Row:
    """One recorded epoch: the train loss and, per layer, the stored telemetry."""

    epoch: int
    loss: float | None
    delta: list[float | None]
    grad: list[float | None]
    dead: list[float | None]
    saturated: list[float | None]


@dataclass
class Streak:
    """How long a condition has held, and since when."""

    length: int = 0
    start: int = 0

    def step(self, holds: bool, epoch: int) -> bool:
        """Advance; True on the epoch the condition has held SUSTAIN times in a row."""
        if not holds:
            self.length = 0
            return False
        if self.length == 0:
            self.start = epoch
        self.length += 1
        return self.length == SUSTAIN


@dataclass
class Detectors:
    """The state of every streaming detector after `epoch`."""

    activations: list[str]
    epoch: int = 0
    flags: dict[str, dict] = field(default_factory=dict)
    streaks: dict[str, Streak] = field(default_factory=dict)
    first_loss: float | None = None
    first_grad: list[float | None] = field(default_factory=list)
    best: float | None = None  # the best loss before the oscillation window
    plateau_anchor: tuple[float, int, int] | None = None  # (best loss, its epoch, row count)
    rows_seen: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=OSCILLATION_WINDOW))
    open: dict[str, str] = field(default_factory=dict)  # condition key -> its raised flag

    def feed(self, row: Row) -> None:
        self.epoch, self.rows_seen = row.epoch, self.rows_seen + 1
        self._layers(row)
        if row.loss is not None:
            self._loss(row)

    def raise_flag(self, key: str, code: str, epoch: int, message: str,
                   layer: int | None = None) -> None:
        """Report the first occurrence of `code`; it stays open while `key` holds."""
        if code not in self.flags:
            self.flags[code] = {"code": code, "epoch": epoch, "until": None, "layer": layer,
                                "message": message}
            self.open[key] = code

    def release(self, key: str, epoch: int) -> None:
        """The condition `key` stopped holding at `epoch`: close its flag there."""
        code = self.open.pop(key, None)
        if code is not None:
            self.flags[code]["until"] = epoch

    def _streak(self, key: str, holds: bool, epoch: int) -> Streak | None:
        if not holds and key in self.open:
            self.release(key, epoch)
        streak = self.streaks.setdefault(key, Streak())
        return streak if streak.step(holds, epoch) else None

    def _layers(self, row: Row) -> None:
        depth = len(self.activations)
        if depth >= 2:
            self._ratio(row, row.delta[0], row.delta[-1])
        if not self.first_grad:
            self.first_grad = list(row.grad)
        for i, act in enumerate(self.activations):
            self._layer(row, i, act, i == depth - 1)

    def _ratio(self, row: Row, first: float | None, last: float | None) -> None:
        ratio = first / last if first is not None and last else None
        low = self._streak("vanishing", ratio is not None and ratio < VANISHING_RATIO, row.epoch)
        if low:
            self.raise_flag("vanishing", "vanishing_gradients", low.start,
                            f"the error reaching layer 1 is {ratio:.1e} of the output layer's "
                            f"(‖δ¹‖/‖δᴸ‖ < {VANISHING_RATIO:g} for {SUSTAIN} recorded epochs): "
                            "early layers barely learn", 1)
        high = self._streak("exploding", ratio is not None and ratio > EXPLODING_RATIO, row.epoch)
        if high:
            self.raise_flag("exploding", "exploding_gradients", high.start,
                            f"the error grows {ratio:.1e}× on its way back to layer 1 "
                            f"(‖δ¹‖/‖δᴸ‖ > {EXPLODING_RATIO:g} for {SUSTAIN} recorded epochs)", 1)

    def _layer(self, row: Row, i: int, act: str, is_output: bool) -> None:
        grad, start = row.grad[i], self.first_grad[i]
        if grad is not None and start and grad > EXPLODING_GROWTH * start:
            self.raise_flag(f"grown{i}", "exploding_gradients", row.epoch,
                            f"layer {i + 1}'s weight gradient grew {grad / start:.1e}× above "
                            f"its first recorded norm", i + 1)
        elif self.open:
            self.release(f"grown{i}", row.epoch)
        if act in RELU_FAMILY:
            self._dead(row, i, act)
        elif act in SATURATING and not is_output:
            # A confident output unit saturates by design; only hidden layers are judged.
            self._saturated(row, i, act)

    def _dead(self, row: Row, i: int, act: str) -> None:
        dead = row.dead[i]
        streak = self._streak(f"dead{i}", dead is not None and dead >= DEAD_FRACTION, row.epoch)
        if streak:
            self.raise_flag(f"dead{i}", "dead_relu", streak.start,
                            f"{dead:.0%} of layer {i + 1}'s {act} units output 0 for every "
                            "sample: they pass no gradient and cannot recover", i + 1)

    def _saturated(self, row: Row, i: int, act: str) -> None:
        sat = row.saturated[i]
        streak = self._streak(f"sat{i}", sat is not None and sat >= SATURATED_FRACTION,
                              row.epoch)
        if streak:
            self.raise_flag(f"sat{i}", "saturated_units", streak.start,
                            f"{sat:.0%} of layer {i + 1}'s {act} activations are saturated: "
                            "their derivative is near 0 and the error stops there", i + 1)

    def _loss(self, row: Row) -> None:
        loss = row.loss
        if self.first_loss is None:
            self.first_loss = loss
        self._oscillation(row.epoch, loss)
        self._plateau(row.epoch, loss)

    def _plateau(self, epoch: int, loss: float) -> None:
        anchor = self.plateau_anchor
        if anchor is None or loss < anchor[0] * (1 - PLATEAU_IMPROVEMENT):
            self.plateau_anchor = (loss, epoch, self.rows_seen)
            self.release("plateau", epoch)
            return
        best, since, count = anchor
        if (self.rows_seen - count >= PLATEAU_WINDOW
                and best > PLATEAU_UNLEARNED * self.first_loss):
            self.raise_flag("plateau", "loss_plateau", since,
                            f"the loss has stayed near {best:.4g} ({best / self.first_loss:.0%} "
                            f"of its first value) for {self.rows_seen - count} recorded epochs")

    def _oscillation(self, epoch: int, loss: float) -> None:
        if len(self.recent) == OSCILLATION_WINDOW:  # the oldest leaves the window
            leaving = self.recent[0][1]
            self.best = leaving if self.best is None else min(self.best, leaving)
        self.recent.append((epoch, loss))
        before = self.best  # the best loss recorded before the window
        if len(self.recent) < OSCILLATION_WINDOW or before is None:
            return
        losses = [v for _, v in self.recent]
        rises = sum(b > a for a, b in zip(losses, losses[1:]))
        mean = sum(losses) / len(losses)
        if not (rises >= OSCILLATION_RISES and mean >= OSCILLATION_GROWTH * before
                and mean - before >= 0.01 * self.first_loss):
            self.release("oscillation", epoch)
        else:
            self.raise_flag("oscillation", "learning_rate_too_high", self.recent[0][0],
                            f"the loss rose in {rises} of the last {len(losses) - 1} recorded "
                            f"epochs, to {mean / before:.1f}× its best: steps overshoot the "
                            "minimum; lower the learning rate")


_cache: OrderedDict[str, Detectors] = OrderedDict()
_lock = threading.Lock()


def diagnose(session: Session, job: Job) -> dict:
    """The job's flags, ordered by the epoch they started; cheap on repeated polls."""
    with _lock:
        cached = _cache.pop(job.id, None)
    state = cached or Detectors([layer["activation"] for layer in job.spec["network"]["layers"]])
    for row in _rows_after(session, job, state.epoch, len(state.activations)):
        state.feed(row)
    with _lock:
        _cache[job.id] = state
        while len(_cache) > CACHE_JOBS:
            _cache.popitem(last=False)
    flags = dict(state.flags)
    divergence = divergence_flag(job)
    if divergence is not None:
        flags[divergence["code"]] = divergence
    ordered = sorted(flags.values(), key=lambda f: (f["epoch"], FLAG_ORDER.index(f["code"])))
    return {"flags": copy.deepcopy(ordered), "epochs_examined": state.epoch}


def divergence_flag(job: Job) -> dict | None:
    if job.status != "failed" or not job.error or "diverged" not in job.error:
        return None
    found = re.search(r"epoch (\d+)", job.error)
    epoch = int(found.group(1)) if found else job.epoch
    return {"code": "divergence", "epoch": epoch, "until": None, "layer": None,
            "message": f"training stopped: {job.error}"}


def _rows_after(session: Session, job: Job, after: int, depth: int):
    """Recorded epochs after `after`, in order, in chunks of READ_CHUNK."""
    while True:
        epochs = session.execute(
            select(EpochMetric.epoch, EpochMetric.train_loss)
            .where(EpochMetric.job_id == job.id, EpochMetric.epoch > after)
            .order_by(EpochMetric.epoch).limit(READ_CHUNK)).all()
        if not epochs:
            return
        layers = _layer_rows(session, job, after, epochs[-1].epoch, depth)
        missing = [[None] * depth for _ in range(4)]
        for epoch, loss in epochs:
            yield Row(epoch, loss, *layers.get(epoch, missing))
        after = epochs[-1].epoch


def _layer_rows(session: Session, job: Job, after: int, last: int, depth: int) -> dict:
    """{epoch: [δ norms, gradient norms, dead fractions, saturated fractions]}, by layer."""
    rows = session.execute(
        select(LayerMetric.epoch, LayerMetric.layer, LayerMetric.delta_norm,
               LayerMetric.weight_grad_norm, LayerMetric.dead_fraction,
               LayerMetric.saturated_fraction)
        .where(LayerMetric.job_id == job.id, LayerMetric.epoch > after,
               LayerMetric.epoch <= last))
    out: dict[int, list] = {}
    for epoch, layer, delta, grad, dead, saturated in rows:
        if not 1 <= layer <= depth:
            continue
        columns = out.get(epoch)
        if columns is None:
            columns = out[epoch] = [[None] * depth for _ in range(4)]
        i = layer - 1
        columns[0][i], columns[1][i], columns[2][i], columns[3][i] = delta, grad, dead, saturated
    return out
