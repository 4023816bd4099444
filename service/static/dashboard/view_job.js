// One job: loss, accuracy, per-layer gradient and delta norms, the gradient heatmap, the
// summary and spec; history from /metrics, then live epochs from the event stream.

import { jobs } from "./api.js";
import { color, Heatmap, LineChart } from "./charts.js";
import { append, badge, card, el, errorBox, fmt, progressBar, shortId } from "./dom.js";
import { followJob } from "./stream.js";

const HISTORY_POINTS = 4000;
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const SUMMARY_KEYS = ["epochs_run", "best_epoch", "final_train_loss", "final_val_loss",
  "best_train_loss", "best_val_loss", "final_train_accuracy", "final_val_accuracy",
  "training_seconds", "samples_per_second"];

export async function jobView(root, signal, jobId) {
  const head = el("div", { class: "job-head" });
  root.append(head);
  let job;
  let history;
  try {
    [job, history] = await Promise.all([jobs.get(jobId, signal),
      jobs.metrics(jobId, HISTORY_POINTS, signal)]);
  } catch (error) {
    if (!signal.aborted) root.append(errorBox(error));
    return;
  }
  const page = new JobPage(root, head, job, history, signal);
  const last = history.epoch.length ? history.epoch[history.epoch.length - 1] : 0;
  if (!FINISHED.has(job.status)) {
    followJob(jobId, last, {
      status: (s) => page.status(s),
      epoch: (e) => page.epoch(e),
      done: (j) => page.finished(j),
      error: (error) => root.append(errorBox(error)),
    }, signal);
  }
}

class JobPage {
  constructor(root, head, job, history, signal) {
    this.job = job;
    this.head = head;
    this.lastEpoch = 0;
    const layers = history.layers.map((l) => `layer ${l.layer} (${l.units} ${l.activation})`);
    const logToggle = el("input", { type: "checkbox", id: "loss-log" });
    const lossBox = el("div", { class: "chart", id: "loss-chart" });
    const accBox = el("div", { class: "chart", id: "accuracy-chart" });
    const gradBox = el("div", { class: "chart", id: "grad-chart" });
    const deltaBox = el("div", { class: "chart", id: "delta-chart" });
    const heatBox = el("div", { class: "heatmap-box", id: "grad-heatmap" });
    this.summaryBox = el("dl", { class: "summary", id: "job-summary" });
    this.diagnosisBox = el("ul", { class: "diagnosis", id: "job-diagnosis" });
    root.append(el("div", { class: "grid" },
      card("Loss", el("label", { class: "toggle" }, logToggle, " log scale"), lossBox),
      card("Accuracy", accBox),
      card("Weight-gradient norm ‖∂L/∂W‖ per layer (log)", gradBox),
      card("Back-propagated error norm ‖δ‖ per layer (log)", deltaBox),
      el("section", { class: "card wide" },
        el("h2", {}, "Gradient norm by layer × epoch (log₁₀ ‖∂L/∂W‖)"), heatBox),
      card("Summary", this.summaryBox),
      card("Diagnosis", this.diagnosisBox),
      card("Spec", el("pre", { class: "spec", id: "job-spec" },
        JSON.stringify(job.spec, null, 2)))));
    const trainVal = () => [{ label: "train", color: color(0) },
      { label: "validation", color: color(1), dash: [6, 4] }];
    this.loss = new LineChart(lossBox, { yLabel: "loss", series: trainVal() });
    this.accuracy = new LineChart(accBox, { yLabel: "accuracy", series: trainVal() });
    const layerSeries = layers.map((label, i) => ({ label, color: color(i + 2) }));
    this.grad = new LineChart(gradBox, { yLabel: "‖∂L/∂W‖", logY: true, series: layerSeries });
    this.delta = new LineChart(deltaBox, { yLabel: "‖δ‖", logY: true, series: layerSeries });
    this.heatmap = new Heatmap(heatBox);
    logToggle.addEventListener("change", () => this.loss.setLog(logToggle.checked));
    signal.addEventListener("abort", () => {
      [this.loss, this.accuracy, this.grad, this.delta, this.heatmap].forEach((c) => c.destroy());
    });
    this.load(history);
    this.render();
  }

  load(h) {
    const xs = h.epoch.slice();
    this.loss.setData([xs, h.train_loss.slice(), h.val_loss.slice()]);
    this.accuracy.setData([xs.slice(), h.train_accuracy.slice(), h.val_accuracy.slice()]);
    this.grad.setData([xs.slice(), ...h.layers.map((l) => l.weight_grad_norm.slice())]);
    this.delta.setData([xs.slice(), ...h.layers.map((l) => l.delta_norm.slice())]);
    this.heatmap.setData(xs.slice(), h.layers.map((l) => l.weight_grad_norm.slice()));
    this.lastEpoch = xs.length ? xs[xs.length - 1] : 0;
  }

  epoch(e) {
    if (e.epoch <= this.lastEpoch) return;
    this.lastEpoch = e.epoch;
    this.loss.append(e.epoch, [e.train_loss, e.val_loss]);
    this.accuracy.append(e.epoch, [e.train_accuracy, e.val_accuracy]);
    this.grad.append(e.epoch, e.layers.map((l) => l.weight_grad_norm));
    this.delta.append(e.epoch, e.layers.map((l) => l.delta_norm));
    this.heatmap.append(e.epoch, e.layers.map((l) => l.weight_grad_norm));
    this.job.progress = { ...this.job.progress, epoch: e.epoch };
    this.scheduleRender();
  }

  status(s) {
    Object.assign(this.job, { status: s.status, error: s.error,
      progress: { epoch: s.epoch, epochs: s.epochs } });
    this.render();
  }

  finished(job) {
    this.job = job;
    this.render();
  }

  scheduleRender() {
    if (this.renderPending) return;
    this.renderPending = true;
    requestAnimationFrame(() => { this.renderPending = false; this.render(); });
  }

  render() {
    const job = this.job;
    const cancel = el("button", { id: "cancel-job", class: "danger", type: "button",
      onclick: () => this.cancel(cancel) }, "Cancel job");
    this.head.replaceChildren();
    append(this.head, [
      el("div", {},
        el("h1", { id: "job-name" }, job.name || shortId(job.id)),
        el("div", { class: "muted mono" }, job.id)),
      el("div", { class: "job-meta" },
        el("span", { id: "job-status" }, badge(job.status)),
        progressBar(job.progress.epoch, job.progress.epochs),
        el("span", { id: "job-progress", class: "muted" },
          `epoch ${job.progress.epoch} / ${job.progress.epochs}`),
        job.worker ? el("span", { class: "muted mono" }, job.worker) : null,
        FINISHED.has(job.status) || job.status === "cancelling" ? null : cancel,
        el("a", { href: `#/compare?ids=${job.id}`, class: "button ghost" }, "Compare…"),
        job.status === "succeeded" ? el("a", { id: "trace-link", class: "button ghost",
          href: `/trace?job=${encodeURIComponent(job.id)}` }, "Trace the backprop…") : null),
      job.error ? el("div", { class: "error", role: "alert" }, job.error) : null]);
    const summary = job.summary || {};
    this.summaryBox.replaceChildren(...SUMMARY_KEYS.filter((k) => k in summary).flatMap(
      (k) => [el("dt", {}, k.replaceAll("_", " ")), el("dd", {}, fmt(summary[k]))]));
    this.renderDiagnosis(job.diagnosis);
    if (!job.summary) {
      this.summaryBox.append(el("dd", { class: "muted" },
        "The summary appears when the job succeeds."));
    }
  }

  renderDiagnosis(diagnosis) {
    // Status events carry no diagnosis: keep the last flags until the job is fetched again.
    if (!diagnosis) return;
    const flags = diagnosis.flags || [];
    this.diagnosisBox.replaceChildren(...flags.map((f) => el("li", { class: "flag",
      dataset: { code: f.code } }, el("strong", {}, f.code.replaceAll("_", " ")),
    ` from epoch ${f.epoch}${f.until ? ` to ${f.until}` : ""}: ${f.message}`)));
    if (!flags.length) {
      this.diagnosisBox.append(el("li", { class: "muted" },
        `No problem detected in ${diagnosis.epochs_examined} recorded epochs.`));
    }
  }

  async cancel(button) {
    button.disabled = true;
    try {
      this.job = await jobs.cancel(this.job.id);
      this.render();
    } catch (error) {
      this.head.append(errorBox(error));
      button.disabled = false;
    }
  }
}
