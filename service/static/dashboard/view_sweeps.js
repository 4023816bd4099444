// Sweeps: the list, and one sweep's trials ranked by its metric with their parameters and
// overlaid curves. Polled while trials are still running.

import { jobs, sweeps } from "./api.js";
import { badge, card, el, errorBox, fmt, progressBar, shortId } from "./dom.js";
import { curveSelect, overlay, overlayChart } from "./compare.js";

const POLL_MS = 2000;
const POINTS = 1000;

export async function sweepsView(root, signal) {
  const body = el("tbody");
  root.append(el("div", { class: "toolbar" }, el("h1", {}, "Sweeps")),
    el("table", { class: "jobs", id: "sweeps-table" },
      el("thead", {}, el("tr", {}, ["name", "metric", "trials", "created"]
        .map((h) => el("th", {}, h)))), body));
  try {
    const { items } = await sweeps.list(signal);
    body.append(...items.map((s) => el("tr", { dataset: { sweepId: s.id } },
      el("td", {}, el("a", { href: `#/sweeps/${s.id}` }, s.name || shortId(s.id))),
      el("td", {}, `${s.metric} (${s.goal})`),
      el("td", {}, Object.entries(s.counts).map(([k, n]) => el("span", { class: "count" },
        badge(k), ` ${n}`))),
      el("td", { class: "muted" }, new Date(s.created_at).toLocaleString()))));
    if (items.length === 0) {
      body.append(el("tr", {}, el("td", { colspan: 4, class: "empty" },
        "No sweeps yet. Start one with POST /v1/sweeps.")));
    }
  } catch (error) {
    if (!signal.aborted) root.append(errorBox(error));
  }
}

export async function sweepView(root, signal, sweepId) {
  const head = el("div", { class: "job-head" });
  const table = el("div", { id: "sweep-trials" });
  const chartBox = el("div", { class: "chart", id: "sweep-chart" });
  let curve = "train_loss";
  const select = curveSelect("sweep-curve", curve, (c) => { curve = c; drawCurves(); });
  root.append(head, el("div", { class: "stack" },
    card("Trials, best first", table), card("Curves", select, chartBox)));
  let chart = null;
  let sweep = null;
  const metrics = new Map();
  signal.addEventListener("abort", () => chart && chart.destroy());

  async function refresh() {
    try {
      sweep = await sweeps.get(sweepId, signal);
    } catch (error) {
      if (!signal.aborted) head.replaceChildren(errorBox(error));
      return;
    }
    if (curve === "train_loss" && !metrics.size && sweep.metric.includes("val")) {
      curve = "val_loss";
      select.value = curve;
    }
    renderHead();
    table.replaceChildren(trialsTable(sweep));
    await drawCurves();
    if (sweep.status === "active" && !signal.aborted) setTimeout(refresh, POLL_MS);
  }

  function renderHead() {
    const total = sweep.trials.length;
    const done = sweep.trials.filter((t) => ["succeeded", "failed", "cancelled"]
      .includes(t.status)).length;
    const cancel = el("button", { class: "danger", type: "button", id: "cancel-sweep",
      onclick: async () => {
        cancel.disabled = true;
        try { await sweeps.cancel(sweepId); } catch (error) { head.append(errorBox(error)); }
      } }, "Cancel sweep");
    head.replaceChildren(el("div", {}, el("h1", {}, sweep.name || shortId(sweep.id)),
      el("div", { class: "muted" }, `${sweep.search.method} search · ranked by ${sweep.metric}` +
        ` (${sweep.goal}) · ${sweep.parallel_trials} in parallel`)),
    el("div", { class: "job-meta" }, progressBar(done, total),
      el("span", { class: "muted" }, `${done} / ${total} trials finished`),
      sweep.status === "active" ? cancel : null));
  }

  async function drawCurves() {
    const trials = sweep.trials.filter((t) => t.progress.epoch > 0);
    await Promise.all(trials.map(async (t) => {
      const cached = metrics.get(t.id);
      if (!cached || cached.status !== t.status || !["succeeded", "failed", "cancelled"]
        .includes(t.status)) {
        metrics.set(t.id, { status: t.status, data: await jobs.metrics(t.id, POINTS, signal) });
      }
    })).catch(() => null);
    if (signal.aborted) return;
    if (chart) chart.destroy();
    chartBox.replaceChildren();
    const shown = trials.filter((t) => metrics.has(t.id));
    chart = overlayChart(chartBox, shown.map((t) => `#${t.trial + 1} ${paramText(t)}`), true);
    chart.setData(overlay(shown.map((t) => metrics.get(t.id).data), curve));
  }

  refresh();
}

function paramText(trial) {
  return Object.entries(trial.params).map(([k, v]) => `${k.split(".").pop()}=${fmt(v)}`)
    .join(" ");
}

function trialsTable(sweep) {
  const paths = Object.keys(sweep.search.parameters);
  return el("table", { class: "jobs" },
    el("thead", {}, el("tr", {}, ["rank", "trial", "status", sweep.metric, ...paths, "worker"]
      .map((h) => el("th", {}, h)))),
    el("tbody", {}, sweep.trials.map((t) => el("tr", {
      class: t.rank === 1 ? "best" : null, dataset: { jobId: t.id, rank: t.rank ?? "" } },
    el("td", {}, t.rank ?? "–"),
    el("td", {}, el("a", { href: `#/jobs/${t.id}` }, `#${t.trial + 1}`)),
    el("td", {}, badge(t.status)),
    el("td", { class: "mono" }, fmt(t.metric_value)),
    paths.map((p) => el("td", { class: "mono" }, fmt(t.params[p]))),
    el("td", { class: "muted mono" }, t.worker || "–")))));
}
