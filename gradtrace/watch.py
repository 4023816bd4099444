"""`gradtrace submit --watch` / `gradtrace watch`: follow a job's event stream.

On a terminal: a live rich progress bar (epoch/epochs, loss, ETA) above one row per
layer with ‖∂L/∂W‖, ‖δ‖ and a sparkline of the gradient norm on a log scale shared by
all layers, so a vanishing gradient shows as a row of low bars. Elsewhere (a pipe, a CI
log): plain progress lines, at most one per `interval` seconds, plus the last epoch.
"""
from __future__ import annotations

import math
import time
from collections import deque

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from gradtrace.client import Client, DoneEvent, EpochEvent, Job, StatusEvent

SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 40


def fmt(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def epoch_line(event: EpochEvent, epochs: int | None = None) -> str:
    """One plain line per epoch: losses, accuracy, and per-layer norms."""
    total = f"/{epochs}" if epochs else ""
    parts = [f"epoch {event.epoch}{total}", f"loss {fmt(event.train_loss)}",
             f"val_loss {fmt(event.val_loss)}", f"acc {fmt(event.train_accuracy, '.3f')}",
             f"val_acc {fmt(event.val_accuracy, '.3f')}"]
    grads = " ".join(f"L{s.layer}={fmt(s.weight_grad_norm, '.2e')}" for s in event.layers)
    deltas = " ".join(f"L{s.layer}={fmt(s.delta_norm, '.2e')}" for s in event.layers)
    return "  ".join(parts) + f"  | grad {grads}  | delta {deltas}"


def done_line(job: Job) -> str:
    summary = job.summary or {}
    line = f"job {job.id} {job.status} at epoch {job.epoch}/{job.epochs}"
    if summary:
        line += (f": final train loss {fmt(summary.get('final_train_loss'))}, "
                 f"train accuracy {fmt(summary.get('final_train_accuracy'), '.3f')}, "
                 f"{fmt(summary.get('training_seconds'), '.2f')} s")
    if job.error:
        line += f" (error: {job.error})"
    return line


def sparkline(values, lo: float, hi: float) -> str:
    """Log-scaled bars; `lo`/`hi` are log10 bounds shared by every layer."""
    span = max(hi - lo, 1e-12)
    chars = []
    for v in values:
        if v is None or v <= 0:
            chars.append(" ")
        else:
            level = (math.log10(v) - lo) / span
            chars.append(SPARK[min(len(SPARK) - 1, max(0, int(level * len(SPARK))))])
    return "".join(chars)


class PlainView:
    """Progress lines for logs and pipes."""

    def __init__(self, out: Console, interval: float):
        self.out, self.interval = out, interval
        self.epochs: int | None = None
        self._last_print = -math.inf
        self._pending: EpochEvent | None = None
        self._start: tuple[float, int] | None = None

    def status(self, event: StatusEvent) -> None:
        self.epochs = event.epochs
        self._flush(time.monotonic())
        self.out.print(f"status {event.status} (epoch {event.epoch}/{event.epochs})",
                       highlight=False)

    def epoch(self, event: EpochEvent) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = (now, event.epoch)
        self._pending = event
        if now - self._last_print >= self.interval:
            self._flush(now)

    def _flush(self, now: float) -> None:
        if self._pending is None:
            return
        line = epoch_line(self._pending, self.epochs)
        eta = self._eta(now, self._pending.epoch)
        self.out.print(line + (f"  | eta {eta:.0f}s" if eta is not None else ""),
                       highlight=False, soft_wrap=True)
        self._pending, self._last_print = None, now

    def _eta(self, now: float, epoch: int) -> float | None:
        if self._start is None or not self.epochs or epoch <= self._start[1]:
            return None
        rate = (epoch - self._start[1]) / max(now - self._start[0], 1e-9)
        return (self.epochs - epoch) / rate

    def done(self, job: Job) -> None:
        self._flush(time.monotonic())
        self.out.print(done_line(job), highlight=False, soft_wrap=True)

    def close(self) -> None:
        pass


class LiveView:
    """A rich Live display: the progress bar and the per-layer gradient table."""

    def __init__(self, out: Console, job: Job):
        self.out, self.job = out, job
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                                 TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                                 console=out)
        self.task = self.progress.add_task(job.name or job.id[:8], total=job.epochs or None,
                                           loss="-", status=job.status)
        self.history: dict[int, deque] = {}
        self.latest: EpochEvent | None = None
        self.live = Live(self._render(), console=out, refresh_per_second=8)
        self.live.start()

    def status(self, event: StatusEvent) -> None:
        self.progress.update(self.task, total=event.epochs or None, completed=event.epoch,
                             status=event.status)
        self.live.update(self._render())

    def epoch(self, event: EpochEvent) -> None:
        self.latest = event
        for s in event.layers:
            self.history.setdefault(s.layer, deque(maxlen=HISTORY)).append(s.weight_grad_norm)
        self.progress.update(self.task, completed=event.epoch, loss=fmt(event.train_loss))
        self.live.update(self._render())

    def done(self, job: Job) -> None:
        self.progress.update(self.task, status=job.status)
        self.live.update(self._render())
        self.close()
        self.out.print(done_line(job), highlight=False)

    def close(self) -> None:
        self.live.stop()

    def _render(self) -> Group:
        table = Table(box=None, pad_edge=False)
        for title in ("layer", "‖∂L/∂W‖", "‖δ‖", "‖∂L/∂W‖ history (log)"):
            table.add_column(title, justify="right" if title != "‖∂L/∂W‖ history (log)" else "left")
        positive = [v for h in self.history.values() for v in h if v is not None and v > 0]
        lo, hi = ((math.log10(min(positive)), math.log10(max(positive))) if positive
                  else (0.0, 1.0))
        for s in (self.latest.layers if self.latest else []):
            table.add_row(str(s.layer), fmt(s.weight_grad_norm, ".2e"), fmt(s.delta_norm, ".2e"),
                          sparkline(self.history.get(s.layer, []), lo, hi))
        return Group(self.progress, table)


def watch(client: Client, job_id: str, out: Console, *, interval: float = 1.0) -> Job:
    """Follow the job's events until it is done; returns the finished job."""
    job = client.get_job(job_id)
    view = LiveView(out, job) if out.is_terminal else PlainView(out, interval)
    try:
        for event in client.stream(job_id):
            if isinstance(event, StatusEvent):
                view.status(event)
            elif isinstance(event, EpochEvent):
                view.epoch(event)
            elif isinstance(event, DoneEvent):
                view.done(event.job)
                return event.job
    finally:
        view.close()
    return client.get_job(job_id)
