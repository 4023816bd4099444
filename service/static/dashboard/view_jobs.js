// The job list: status and live progress (polled), and checkboxes to pick jobs to compare.

import { jobs } from "./api.js";
import { badge, el, errorBox, fmt, progressBar, shortId } from "./dom.js";

const POLL_MS = 2000;
const STATUSES = ["", "waiting", "queued", "running", "cancelling", "succeeded", "failed",
  "cancelled"];

export function jobsView(root, signal) {
  const selected = new Set();
  const filter = el("select", { id: "status-filter", "aria-label": "status filter",
    onchange: refresh }, STATUSES.map((s) => el("option", { value: s }, s || "all statuses")));
  const compare = el("button", { id: "compare-selected", type: "button", disabled: true,
    onclick: () => { location.hash = `#/compare?ids=${[...selected].join(",")}`; } },
  "Compare selected");
  const body = el("tbody");
  const status = el("div", { class: "status-line" });
  root.append(el("div", { class: "toolbar" }, el("h1", {}, "Jobs"), filter, compare),
    el("table", { class: "jobs", id: "jobs-table" },
      el("thead", {}, el("tr", {}, ["", "name", "status", "progress", "loss", "accuracy",
        "created", "worker"].map((h) => el("th", {}, h)))),
      body),
    status);

  async function refresh() {
    try {
      const params = { limit: 100 };
      if (filter.value) params.status = filter.value;
      const page = await jobs.list(params, signal);
      body.replaceChildren(...page.items.map(row));
      if (page.items.length === 0) {
        body.append(el("tr", {}, el("td", { colspan: 8, class: "empty" },
          "No jobs yet. Submit one with the CLI or POST /v1/jobs.")));
      }
      status.replaceChildren();
    } catch (error) {
      if (!signal.aborted) status.replaceChildren(errorBox(error));
    }
  }

  function row(job) {
    const box = el("input", { type: "checkbox", "aria-label": `select ${job.name || job.id}`,
      dataset: { jobId: job.id }, checked: selected.has(job.id), onchange: () => {
        if (box.checked) selected.add(job.id); else selected.delete(job.id);
        compare.disabled = selected.size < 1;
      } });
    const summary = job.summary || {};
    return el("tr", { dataset: { jobId: job.id } },
      el("td", {}, box),
      el("td", {}, el("a", { href: `#/jobs/${job.id}`, class: "job-link" },
        job.name || shortId(job.id)), el("div", { class: "muted mono" }, shortId(job.id))),
      el("td", {}, badge(job.status)),
      el("td", {}, progressBar(job.progress.epoch, job.progress.epochs),
        el("div", { class: "muted" }, `${job.progress.epoch} / ${job.progress.epochs}`)),
      el("td", {}, fmt(summary.final_train_loss)),
      el("td", {}, fmt(summary.final_train_accuracy)),
      el("td", { class: "muted" }, new Date(job.created_at).toLocaleString()),
      el("td", { class: "muted mono" }, job.worker || "–"));
  }

  refresh();
  const timer = setInterval(refresh, POLL_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
