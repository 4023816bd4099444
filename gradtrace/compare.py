"""`gradtrace compare`: several jobs side by side, and their loss curves overlaid.

The figure is drawn here, on the client, from each job's (downsampled) metrics with
matplotlib's Agg canvas: the server only renders one job per plot.png.
"""
from __future__ import annotations

import io
import math

from rich.table import Table

from gradtrace.client import Job, Metrics
from gradtrace.watch import fmt

# (row title, summary key, format) of the comparison table.
SUMMARY_ROWS = (
    ("final train loss", "final_train_loss", ".4g"),
    ("best train loss", "best_train_loss", ".4g"),
    ("final val loss", "final_val_loss", ".4g"),
    ("best val loss", "best_val_loss", ".4g"),
    ("final train accuracy", "final_train_accuracy", ".3f"),
    ("final val accuracy", "final_val_accuracy", ".3f"),
    ("best epoch", "best_epoch", ""),
    ("training time (s)", "training_seconds", ".2f"),
)


def compare_table(jobs: list[Job]) -> Table:
    """Rows are measures, columns are jobs (in the order given)."""
    table = Table(title="comparison")
    table.add_column("")
    for job in jobs:
        table.add_column(f"{job.name or '-'}\n{job.id}", justify="right", overflow="fold")
    table.add_row("status", *[job.status for job in jobs])
    table.add_row("epochs", *[f"{job.epoch}/{job.epochs}" for job in jobs])
    for title, key, spec in SUMMARY_ROWS:
        table.add_row(title, *[fmt((job.summary or {}).get(key), spec) for job in jobs])
    return table


def compare_png(jobs: list[Job], metrics: list[Metrics], *, width: int = 1000,
                height: int = 600) -> bytes:
    """Train (solid) and validation (dashed) loss of every job on one log-scale axis."""
    # Imported here: matplotlib takes most of a second to import, and every other CLI
    # command should start fast.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / 100, height / 100), dpi=100, layout="constrained")
    ax = fig.subplots()
    for index, (job, m) in enumerate(zip(jobs, metrics)):
        color = f"C{index % 10}"
        label = job.name or job.id[:8]
        for series, style, suffix in ((m.train_loss, "-", "train"), (m.val_loss, "--", "val")):
            points = [(e, v) for e, v in zip(m.epoch, series)
                      if v is not None and math.isfinite(v) and v > 0]
            if points:
                ax.plot(*zip(*points), style, color=color, label=f"{label} {suffix}")
    if ax.lines:
        ax.set_yscale("log")
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no epochs recorded yet", ha="center", transform=ax.transAxes)
    ax.set(title="loss", xlabel="epoch")
    ax.grid(True, which="both", alpha=0.3)
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return buf.getvalue()
