// Helpers shared by the compare and sweep views: overlaying several jobs' curves.

import { color, LineChart } from "./charts.js";
import { el } from "./dom.js";

export const CURVES = ["train_loss", "val_loss", "train_accuracy", "val_accuracy"];

// Several jobs' columns on one epoch axis (the union of their epochs, gaps as null).
export function overlay(metricsList, curve) {
  const epochs = [...new Set(metricsList.flatMap((m) => m.epoch))].sort((a, b) => a - b);
  const position = new Map(epochs.map((e, i) => [e, i]));
  const columns = metricsList.map((m) => {
    const column = new Array(epochs.length).fill(null);
    m.epoch.forEach((e, i) => { column[position.get(e)] = m[curve][i]; });
    return column;
  });
  return [epochs, ...columns];
}

export function overlayChart(container, labels, logY) {
  return new LineChart(container, { logY, height: 320, yLabel: "",
    series: labels.map((label, i) => ({ label, color: color(i), width: 2 })) });
}

export function curveSelect(id, initial, onchange) {
  const select = el("select", { id, "aria-label": "curve", onchange: () => onchange(select.value) },
    CURVES.map((c) => el("option", { value: c, selected: c === initial }, c.replace("_", " "))));
  return select;
}

// {"optimizer.learning_rate": 0.1, "network.layers[0].units": 4, ...}
export function flatten(value, prefix = "", out = {}) {
  if (Array.isArray(value)) {
    value.forEach((v, i) => flatten(v, `${prefix}[${i}]`, out));
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out[prefix] = value;
  }
  return out;
}

// The spec fields whose values differ between the jobs: what the comparison is about.
export function differingFields(specs) {
  const flat = specs.map((s) => flatten(s));
  const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))];
  return keys.filter((k) => new Set(flat.map((f) => JSON.stringify(f[k]))).size > 1);
}
