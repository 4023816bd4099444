// Compare: several jobs' curves overlaid, picked from the recent jobs, with the spec
// fields that differ between them.

import { jobs } from "./api.js";
import { badge, card, el, errorBox, fmt, shortId } from "./dom.js";
import { curveSelect, differingFields, flatten, overlay, overlayChart } from "./compare.js";

const POINTS = 1500;

export async function compareView(root, signal, query) {
  const params = new URLSearchParams(query || "");
  const selected = new Set((params.get("ids") || "").split(",").filter(Boolean));
  let curve = params.get("curve") || "train_loss";
  let logY = params.get("log") !== "0";
  const cache = new Map();
  const picker = el("div", { class: "picker", id: "compare-picker" });
  const chartBox = el("div", { class: "chart", id: "compare-chart" });
  const table = el("div", { id: "compare-table" });
  const logToggle = el("input", { type: "checkbox", id: "compare-log", checked: logY,
    onchange: () => { logY = logToggle.checked; draw(); } });
  root.append(el("div", { class: "toolbar" }, el("h1", {}, "Compare"),
    curveSelect("compare-curve", curve, (c) => { curve = c; draw(); }),
    el("label", { class: "toggle" }, logToggle, " log scale")),
  el("div", { class: "compare" }, card("Jobs", picker),
    el("div", { class: "stack" }, card("Curves", chartBox), card("Runs", table))));
  let chart = null;
  signal.addEventListener("abort", () => chart && chart.destroy());

  try {
    const recent = await jobs.list({ limit: 100 }, signal);
    picker.append(...recent.items.map(pickRow));
  } catch (error) {
    if (!signal.aborted) picker.append(errorBox(error));
  }
  draw();

  function pickRow(job) {
    const box = el("input", { type: "checkbox", checked: selected.has(job.id),
      dataset: { jobId: job.id }, onchange: () => {
        if (box.checked) selected.add(job.id); else selected.delete(job.id);
        draw();
      } });
    return el("label", { class: "pick" }, box, " ", job.name || shortId(job.id), " ",
      badge(job.status));
  }

  async function draw() {
    const ids = [...selected];
    history.replaceState(null, "", `#/compare?ids=${ids.join(",")}&curve=${curve}` +
      `&log=${logY ? 1 : 0}`);
    let runs;
    try {
      runs = await Promise.all(ids.map(load));
    } catch (error) {
      if (!signal.aborted) table.replaceChildren(errorBox(error));
      return;
    }
    if (signal.aborted) return;
    if (chart) chart.destroy();
    chartBox.replaceChildren();
    chart = overlayChart(chartBox, runs.map((r) => r.job.name || shortId(r.job.id)), logY);
    chart.setData(overlay(runs.map((r) => r.metrics), curve));
    table.replaceChildren(runsTable(runs));
  }

  async function load(id) {
    if (!cache.has(id)) {
      cache.set(id, Promise.all([jobs.get(id, signal), jobs.metrics(id, POINTS, signal)])
        .then(([job, metrics]) => ({ job, metrics })));
    }
    return cache.get(id);
  }
}

function runsTable(runs) {
  if (runs.length === 0) return el("p", { class: "muted" }, "Pick jobs on the left.");
  const fields = differingFields(runs.map((r) => r.job.spec));
  const head = ["job", "status", "final train loss", "final val loss", "train acc", ...fields];
  return el("table", { class: "jobs" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, runs.map(({ job }) => {
      const s = job.summary || {};
      const flat = flatten(job.spec);
      return el("tr", { dataset: { jobId: job.id } },
        el("td", {}, el("a", { href: `#/jobs/${job.id}` }, job.name || shortId(job.id))),
        el("td", {}, badge(job.status)), el("td", {}, fmt(s.final_train_loss)),
        el("td", {}, fmt(s.final_val_loss)), el("td", {}, fmt(s.final_train_accuracy)),
        fields.map((f) => el("td", { class: "mono" }, fmt(flat[f]))));
    })));
}
