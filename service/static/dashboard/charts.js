// Line charts (vendored uPlot) and the layer x epoch heatmap (a plain canvas).

import { el, fmt } from "./dom.js";

export const PALETTE = ["#4f7cff", "#f26b4f", "#2fb78a", "#c04fd0", "#e6a700", "#1fa3c7",
  "#8a6d3b", "#e0508f", "#6b8e23", "#7a7aff", "#b05b2b", "#3aa0a0"];

export function color(i) {
  return PALETTE[i % PALETTE.length];
}

// A uPlot line chart that keeps its data, redraws at most once per animation frame, and
// can switch between linear and log y (uPlot needs a rebuild for that).
export class LineChart {
  constructor(container, { series, logY = false, height = 240, yLabel = "" }) {
    this.container = container;
    this.series = series;
    this.logY = logY;
    this.height = height;
    this.yLabel = yLabel;
    this.data = [[], ...series.map(() => [])];
    this.plot = null;
    this.pending = false;
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(container);
    this.build();
  }

  options() {
    return {
      width: Math.max(240, this.container.clientWidth),
      height: this.height,
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false }, y: this.logY ? { distr: 3 } : { auto: true } },
      axes: [
        { label: "epoch", stroke: "#8b93a7", grid: { stroke: "#2a3040" } },
        { label: this.yLabel, stroke: "#8b93a7", grid: { stroke: "#2a3040" }, size: 64,
          values: (u, ticks) => ticks.map((t) => fmt(t, 3)) },
      ],
      series: [{ label: "epoch" }, ...this.series.map((s) => ({
        label: s.label, stroke: s.color, width: s.width || 1.5, dash: s.dash,
        spanGaps: true, points: { show: false }, value: (u, v) => fmt(v),
      }))],
    };
  }

  build() {
    if (this.plot) this.plot.destroy();
    this.plot = new uPlot(this.options(), this.shown(), this.container);
    this.container.dataset.points = String(this.data[0].length);
  }

  // Log scales cannot show zero or negative values: those points become gaps.
  shown() {
    if (!this.logY) return this.data;
    return this.data.map((col, i) => (i === 0 ? col : col.map((v) => (v > 0 ? v : null))));
  }

  setLog(logY) {
    this.logY = logY;
    this.build();
  }

  setData(data) {
    this.data = data;
    this.schedule();
  }

  append(x, values) {
    this.data[0].push(x);
    values.forEach((v, i) => this.data[i + 1].push(v));
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.plot.setData(this.shown());
      this.container.dataset.points = String(this.data[0].length);
    });
  }

  resize() {
    const width = Math.max(240, this.container.clientWidth);
    if (this.plot && Math.abs(width - this.plot.width) > 2) {
      this.plot.setSize({ width, height: this.height });
    }
  }

  destroy() {
    this.observer.disconnect();
    if (this.plot) this.plot.destroy();
  }
}

// Viridis anchors: dark blue for small gradient norms, yellow for large ones.
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const [a, b] = [VIRIDIS[i], VIRIDIS[i + 1]];
  return `rgb(${a.map((v, k) => Math.round(v + f * (b[k] - v))).join(",")})`;
}

// log10 of a quantity per layer (rows) and epoch (columns), drawn on a canvas; epochs are
// averaged into at most one column per pixel so long runs still fit.
export class Heatmap {
  constructor(container, { rowLabel = (i) => `layer ${i + 1}` } = {}) {
    this.container = container;
    this.rowLabel = rowLabel;
    this.canvas = el("canvas", { class: "heatmap", role: "img",
      "aria-label": "gradient norm by layer and epoch" });
    this.scale = el("div", { class: "heatmap-scale" });
    container.append(this.canvas, this.scale);
    this.epochs = [];
    this.rows = [];
    this.pending = false;
    this.observer = new ResizeObserver(() => this.schedule());
    this.observer.observe(container);
  }

  setData(epochs, rows) {
    this.epochs = epochs;
    this.rows = rows;
    this.schedule();
  }

  append(epoch, values) {
    this.epochs.push(epoch);
    values.forEach((v, i) => { (this.rows[i] ||= []).push(v); });
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const labelWidth = 64;
    const rowHeight = 22;
    const width = Math.max(240, this.container.clientWidth);
    const height = Math.max(1, this.rows.length) * rowHeight + 18;
    const ratio = window.devicePixelRatio || 1;
    Object.assign(this.canvas, { width: width * ratio, height: height * ratio });
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const n = this.epochs.length;
    this.container.dataset.columns = String(n);
    if (n === 0) return;
    const logs = this.rows.map((row) => row.map((v) => (v > 0 ? Math.log10(v) : null)));
    let lo = Infinity;
    let hi = -Infinity;
    for (const row of logs) {
      for (const v of row) {
        if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      }
    }
    if (lo === Infinity) { lo = 0; hi = 0; }
    const span = hi - lo || 1;
    const plotWidth = width - labelWidth;
    const columns = Math.min(n, Math.floor(plotWidth));
    const cell = plotWidth / columns;
    logs.forEach((row, r) => {
      for (let c = 0; c < columns; c++) {
        const start = Math.floor((c * n) / columns);
        const end = Math.max(start + 1, Math.floor(((c + 1) * n) / columns));
        const values = row.slice(start, end).filter((v) => v !== null);
        ctx.fillStyle = values.length
          ? viridis((values.reduce((a, b) => a + b, 0) / values.length - lo) / span)
          : "#3a2030";
        ctx.fillRect(labelWidth + c * cell, r * rowHeight, Math.ceil(cell), rowHeight - 2);
      }
      ctx.fillStyle = "#c9d1e3";
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      ctx.fillText(this.rowLabel(r), 4, r * rowHeight + rowHeight / 2);
    });
    ctx.fillStyle = "#8b93a7";
    ctx.textBaseline = "top";
    ctx.fillText(`epoch ${this.epochs[0]}`, labelWidth, this.rows.length * rowHeight + 2);
    const endLabel = `epoch ${this.epochs[n - 1]}`;
    ctx.fillText(endLabel, width - ctx.measureText(endLabel).width - 2,
      this.rows.length * rowHeight + 2);
    this.scale.replaceChildren(el("span", {}, `‖∇W‖ ${fmt(10 ** lo, 2)}`),
      el("span", { class: "heatmap-gradient" }), el("span", {}, fmt(10 ** hi, 2)));
  }

  destroy() {
    this.observer.disconnect();
  }
}
