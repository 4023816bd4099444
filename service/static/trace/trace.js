// The /trace page: draws one backpropagation trace of a job's network and steps through
// the equations of docs/backprop.md with its numbers. Vanilla JS, no inline script;
// every value from the API reaches the page through textContent or SVG attributes.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "gradtrace.token";
const MAX_UNITS_DRAWN = 16;
const state = { trace: null, sample: 0, mode: "forward", step: 0, steps: [] };

const $ = (id) => document.getElementById(id);

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + $("token").value.trim() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json();
  if (!resp.ok) {
    const details = (data.error.details || []).map((d) => d.field + ": " + d.message).join("; ");
    throw new Error(data.error.message + (details ? " (" + details + ")" : ""));
  }
  return data;
}

// ---- numbers --------------------------------------------------------------------

const fmt = (v) => (v === null || v === undefined ? "·" : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : v.toFixed(4));
const short = (v) => (v === 0 ? "0" : Math.abs(v) >= 1e3 || Math.abs(v) < 1e-2 ? v.toExponential(1) : v.toPrecision(3));
const DECADES = 4; // connection widths span four orders of magnitude of |∂L/∂W|
const row = (entry, i) => (entry.values ? entry.values[i] : null);
const vec = (values) => "[" + values.map(fmt).join(", ") + "]";
const mat = (values) => "[" + values.map(vec).join(",\n   ") + "]";
const full = (entry) => Array.isArray(entry.values);

// ---- the network drawing ---------------------------------------------------------

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, cls) {
  const t = el("text", { x, y, "text-anchor": "middle", class: cls || "" }, parent);
  t.textContent = content;
  return t;
}

function shade(value, scale) {
  if (value === null || !isFinite(value) || scale === 0) return "#ffffff";
  const k = Math.min(1, Math.abs(value) / scale);
  const light = Math.round(255 - 160 * k);
  return value >= 0 ? `rgb(255,${light},${light})` : `rgb(${light},${light},255)`;
}

function unitValues(trace, l) {
  // l = 0 is the input; otherwise layer l's a or δ for the chosen sample.
  const entry = l === 0 ? trace.input : trace.layers[l - 1][state.mode === "forward" || l === 0 ? "a" : "delta"];
  const units = entry.shape[1];
  const values = full(entry) ? row(entry, state.sample) : new Array(units).fill(null);
  return values.slice(0, MAX_UNITS_DRAWN).concat(units > MAX_UNITS_DRAWN ? [undefined] : []);
}

function positions(count, x, height) {
  const gap = height / (count + 1);
  return Array.from({ length: count }, (_, i) => ({ x, y: gap * (i + 1) }));
}

function drawNetwork() {
  const svg = $("network");
  svg.replaceChildren();
  const trace = state.trace;
  const depth = trace.layers.length;
  const columns = [];
  for (let l = 0; l <= depth; l++) columns.push({ values: unitValues(trace, l) });
  const tallest = Math.max(...columns.map((c) => c.values.length));
  const width = svg.clientWidth || 900, height = Math.max(360, 46 * (tallest + 1)) + 50;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("height", String(height));
  columns.forEach((column, l) => {
    column.x = 70 + (width - 140) * (l / depth);
    column.points = positions(column.values.length, column.x, height - 50);
  });
  // One scale for every layer, so a gradient that vanishes layer by layer looks it.
  const gmax = Math.max(...trace.layers.map((layer) => largest(layer.dW))) || 1;
  for (let l = 1; l <= depth; l++) drawConnections(svg, trace.layers[l - 1].dW, columns[l - 1], columns[l], gmax);
  columns.forEach((column, l) => drawUnits(svg, column, l, height));
}

function largest(entry) {
  return full(entry) ? Math.max(...entry.values.flat().map(Math.abs)) : Math.abs(entry.top[0].value);
}

function connectionWidth(g, gmax) {
  const decades = Math.log10(Math.abs(g) / gmax + 1e-300);
  return 0.3 + 6 * Math.max(0, 1 + decades / DECADES);
}

function drawConnections(svg, dW, from, to, gmax) {
  if (!full(dW)) return;
  from.points.forEach((p, i) => to.points.forEach((q, j) => {
    if (from.values[i] === undefined || to.values[j] === undefined) return;
    const g = dW.values[i][j];
    el("line", { x1: p.x, y1: p.y, x2: q.x, y2: q.y, stroke: g >= 0 ? "#dc2626" : "#2563eb",
                 "stroke-width": connectionWidth(g, gmax), "stroke-opacity": 0.6 }, svg)
      .appendChild(title("∂L/∂W[" + i + "][" + j + "] = " + fmt(g)));
  }));
}

function title(content) {
  const t = document.createElementNS(SVG, "title");
  t.textContent = content;
  return t;
}

function drawUnits(svg, column, l, height) {
  const trace = state.trace;
  const active = state.steps.length && state.steps[state.step].layer === l;
  const group = el("g", { class: active ? "active" : "" }, svg);
  const known = column.values.filter((v) => v !== null && v !== undefined).map(Math.abs);
  const scale = Math.max(0, ...known);
  const name = l === 0 ? "input x" : "layer " + l + " · " + trace.layers[l - 1].activation;
  text(group, column.x, 14, name, "layer-title");
  column.points.forEach((p, i) => {
    const v = column.values[i];
    if (v === undefined) { text(group, p.x, p.y, "⋯"); return; }
    el("circle", { cx: p.x, cy: p.y, r: 20, fill: shade(v, scale), stroke: "#475569" }, group)
      .appendChild(title(fmt(v)));
    text(group, p.x, p.y + 4, short(v), "unit-label");
  });
  const symbol = l === 0 ? "x" : state.mode === "forward" ? "a" + l : "δ" + l;
  text(group, column.x, height - 34, symbol);
  if (l > 0) {
    const layer = trace.layers[l - 1];
    text(group, column.x, height - 20, `‖δ‖ ${short(layer.delta.norm)}`, "norms");
    text(group, column.x, height - 6, `‖∂L/∂W‖ ${short(layer.dW.norm)}`, "norms");
  }
}

// ---- large layers: norms and top entries ----------------------------------------

function showLarge() {
  const box = $("large");
  box.replaceChildren();
  state.trace.layers.forEach((layer) => {
    ["z", "a", "delta", "dW", "db"].forEach((key) => {
      const entry = layer[key];
      if (full(entry)) return;
      const caption = document.createElement("p");
      caption.textContent = `layer ${layer.layer} ${key}: shape ${entry.shape.join("×")}, norm ${fmt(entry.norm)}; largest entries:`;
      const table = document.createElement("table");
      table.className = "top";
      entry.top.forEach((t) => {
        const tr = table.insertRow();
        tr.insertCell().textContent = "[" + t.index.join(", ") + "]";
        tr.insertCell().textContent = fmt(t.value);
      });
      box.append(caption, table);
    });
  });
}

// ---- the equations, step by step -------------------------------------------------

function outputDeltaEquation(loss, activation) {
  if ((loss === "binary_cross_entropy" && activation === "sigmoid") || (loss === "cross_entropy" && activation === "softmax"))
    return "δᴸ = ∂L/∂zᴸ = (aᴸ − y) / n          (the loss and the output activation cancel)";
  if (loss === "mse") return "δᴸ = ∂L/∂zᴸ = (2/n) (aᴸ − y) ⊙ f′(zᴸ)";
  return "δᴸ = ∂L/∂zᴸ = (1/n) ∂ℓ/∂aᴸ ⊙ f′(zᴸ)     (" + loss + ")";
}

function sampleRow(entry) {
  return full(entry) ? vec(row(entry, state.sample)) : `(${entry.shape.join("×")}, norm ${fmt(entry.norm)})`;
}

function whole(entry) {
  return full(entry) ? (entry.shape.length === 2 ? mat(entry.values) : vec(entry.values)) : `(${entry.shape.join("×")}, norm ${fmt(entry.norm)})`;
}

function buildSteps(trace) {
  const steps = [], L = trace.layers.length, loss = trace.loss_function.name;
  const prev = (l) => (l === 1 ? trace.input : trace.layers[l - 2].a);
  for (let l = 1; l <= L; l++) {
    const layer = trace.layers[l - 1], p = trace.parameters[l - 1];
    steps.push({ layer: l, mode: "forward", title: `Forward, layer ${l}: weighted input`,
      equation: `z${l} = a${l - 1} W${l} + b${l}` + (l === 1 ? "      (a0 = x)" : ""),
      numbers: `a${l - 1} = ${sampleRow(prev(l))}\nW${l} = ${whole(p.W)}\nb${l} = ${whole(p.b)}\nz${l} = ${sampleRow(layer.z)}` });
    steps.push({ layer: l, mode: "forward", title: `Forward, layer ${l}: activation`,
      equation: `a${l} = ${layer.activation}(z${l})`, numbers: `a${l} = ${sampleRow(layer.a)}` });
  }
  steps.push({ layer: L, mode: "forward", title: "Loss", equation: `L = ${loss}(a${L}, y), the mean over the ${trace.input.shape[0]} row(s)`,
    numbers: `L = ${fmt(trace.loss)}` });
  for (let l = L; l >= 1; l--) {
    const layer = trace.layers[l - 1];
    const eq = l === L ? outputDeltaEquation(loss, layer.activation)
      : `δ${l} = (δ${l + 1} W${l + 1}ᵀ) ⊙ f′(z${l})      (the error sent back through W${l + 1})`;
    steps.push({ layer: l, mode: "backward", title: `Backward, layer ${l}: error`, equation: eq,
      numbers: `δ${l} = ${sampleRow(layer.delta)}` });
    steps.push({ layer: l, mode: "backward", title: `Backward, layer ${l}: gradients`,
      equation: `∂L/∂W${l} = a${l - 1}ᵀ δ${l}      ∂L/∂b${l} = Σ_rows δ${l}`,
      numbers: `∂L/∂W${l} = ${whole(layer.dW)}\n∂L/∂b${l} = ${whole(layer.db)}` });
  }
  return steps;
}

function showStep() {
  const step = state.steps[state.step];
  $("step-count").textContent = `step ${state.step + 1} of ${state.steps.length}`;
  $("step-title").textContent = step.title;
  $("step-equation").textContent = step.equation;
  $("step-numbers").textContent = step.numbers;
  setMode(step.mode);
}

function setMode(mode) {
  state.mode = mode;
  $("mode-forward").className = mode === "forward" ? "on" : "";
  $("mode-backward").className = mode === "backward" ? "on" : "";
  drawNetwork();
}

// ---- loading ----------------------------------------------------------------------

function showFlags(job) {
  const flags = (job.diagnosis && job.diagnosis.flags) || [];
  $("flags").hidden = flags.length === 0;
  const list = $("flag-list");
  list.replaceChildren();
  flags.forEach((f) => {
    const li = document.createElement("li");
    const code = document.createElement("span");
    code.className = "code";
    const when = f.until === null ? `from epoch ${f.epoch}` : `epochs ${f.epoch} to ${f.until}`;
    code.textContent = f.code.replace(/_/g, " ") + " (" + when + "): ";
    li.append(code, document.createTextNode(f.message));
    list.appendChild(li);
  });
}

function parseJson(id) {
  try { return JSON.parse($(id).value); } catch (e) { throw new Error(id + " is not valid JSON: " + e.message); }
}

async function runTrace(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  const jobId = $("job").value.trim(), epochText = $("epoch").value.trim();
  try {
    setStatus("tracing…");
    const job = await api("GET", "/v1/jobs/" + encodeURIComponent(jobId));
    showFlags(job);
    const body = { X: parseJson("X"), y: parseJson("y"), epoch: epochText ? Number(epochText) : null };
    const trace = await api("POST", "/v1/jobs/" + encodeURIComponent(jobId) + "/trace", body);
    show(trace);
    setStatus(`job ${job.name || job.id}: ${trace.weights === "model" ? "final weights" : "checkpoint"} of epoch ${trace.epoch}`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

function show(trace) {
  state.trace = trace;
  state.sample = 0;
  state.steps = buildSteps(trace);
  state.step = 0;
  const select = $("sample");
  select.replaceChildren();
  for (let i = 0; i < trace.input.shape[0]; i++) select.add(new Option("row " + (i + 1), String(i)));
  $("loss").textContent = "loss L = " + fmt(trace.loss);
  $("view").hidden = false;
  showLarge();
  showStep();
}

function init() {
  const params = new URLSearchParams(location.search);
  $("job").value = params.get("job") || "";
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("request").addEventListener("submit", runTrace);
  $("mode-forward").addEventListener("click", () => setMode("forward"));
  $("mode-backward").addEventListener("click", () => setMode("backward"));
  $("sample").addEventListener("change", (e) => { state.sample = Number(e.target.value); showStep(); });
  $("prev").addEventListener("click", () => { state.step = Math.max(0, state.step - 1); showStep(); });
  $("next").addEventListener("click", () => { state.step = Math.min(state.steps.length - 1, state.step + 1); showStep(); });
}

document.addEventListener("DOMContentLoaded", init);
