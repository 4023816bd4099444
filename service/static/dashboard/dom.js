// Building DOM nodes without innerHTML: text is always set as text (job names are user input).

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (value === 0) return "0";
  const abs = Math.abs(value);
  return abs >= 1e4 || abs < 1e-3 ? value.toExponential(2) : String(+value.toPrecision(digits));
}

export function badge(status) {
  return el("span", { class: `badge status-${status}`, dataset: { status } }, status);
}

export function progressBar(epoch, epochs) {
  const pct = epochs ? Math.min(100, (100 * epoch) / epochs) : 0;
  const bar = el("div", { class: "progress", title: `${epoch} / ${epochs} epochs` },
    el("div", { class: "progress-fill" }));
  bar.firstChild.style.width = `${pct.toFixed(1)}%`;
  return bar;
}

export function card(title, ...children) {
  return el("section", { class: "card" }, el("h2", {}, title), ...children);
}

export function errorBox(error) {
  return el("div", { class: "error", role: "alert" }, error.message || String(error));
}

export function shortId(id) {
  return id.slice(0, 8);
}
