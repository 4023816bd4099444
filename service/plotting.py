"""PNG figures of a job's telemetry, rendered headless with matplotlib's Agg canvas.

Figures are built with the object API (`Figure` + `FigureCanvasAgg`), never pyplot, so no
global backend or figure registry is touched; a lock serialises rendering anyway because
matplotlib does not promise thread safety and gthread workers serve requests in threads.
"""
from __future__ import annotations

import io
import math
import threading

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
KINDS = ("all", "loss", "gradients")
_RENDER_LOCK = threading.Lock()

# (metric key in the layer columns, panel title) for the gradient panels.
GRADIENT_PANELS = (("weight_grad_norm", "weight-gradient norm ‖∂L/∂W‖ per layer"),
                   ("delta_norm", "back-propagated error norm ‖δ‖ per layer"))


def render_job_plot(metrics: dict, *, title: str, kind: str = "all", width: int = 1000,
                    height: int = 800) -> bytes:
    """The loss curves and/or per-layer norms of `metrics` (read_metrics' columns)."""
    with _RENDER_LOCK:
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
        fig.suptitle(title)
        if not metrics["epoch"]:
            _empty(fig)
        else:
            panels = _panel_count(kind)
            axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
            if kind in ("all", "loss"):
                _loss_panel(axes[0], metrics)
            if kind in ("all", "gradients"):
                for ax, (key, label) in zip(axes[-2:], GRADIENT_PANELS):
                    _layer_panel(ax, metrics, key, label)
            axes[-1].set_xlabel("epoch")
        return png_bytes(fig)


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return buf.getvalue()


def _panel_count(kind: str) -> int:
    return {"all": 3, "loss": 1, "gradients": 2}[kind]


def _empty(fig: Figure) -> None:
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, "no epochs recorded yet", ha="center", va="center", fontsize=16,
            transform=ax.transAxes)


def _loss_panel(ax, metrics: dict) -> None:
    for key, label in (("train_loss", "train loss"), ("val_loss", "validation loss")):
        plot_series(ax, metrics["epoch"], metrics[key], label)
    ax.set_title("loss")
    finish_log_axis(ax)


def _layer_panel(ax, metrics: dict, key: str, title: str) -> None:
    epochs = metrics["epoch"]
    for layer in metrics["layers"]:
        plot_series(ax, epochs[:len(layer[key])], layer[key],
                    f"layer {layer['layer']} ({layer.get('activation', '')})")
    ax.set_title(title)
    finish_log_axis(ax)


def plot_series(ax, xs: list, ys: list, label: str) -> None:
    """Plot the positive, finite points (log axes); skip a series with none."""
    points = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y) and y > 0]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label, linewidth=1.2)


def finish_log_axis(ax) -> None:
    if ax.lines:
        ax.set_yscale("log")
        ax.legend(loc="best", fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
