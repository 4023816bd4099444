// The dashboard's router: #/ (jobs), #/jobs/<id>, #/compare?ids=..., #/sweeps,
// #/sweeps/<id>. Each view gets an AbortSignal that fires when the user navigates away,
// which closes its streams and timers.

import { token } from "./api.js";
import { el } from "./dom.js";
import { compareView } from "./view_compare.js";
import { jobView } from "./view_job.js";
import { jobsView } from "./view_jobs.js";
import { loginView } from "./view_login.js";
import { sweepView, sweepsView } from "./view_sweeps.js";

const ROUTES = [
  [/^#\/jobs\/([\w-]+)$/, jobView, "jobs"],
  [/^#\/compare(?:\?(.*))?$/, compareView, "compare"],
  [/^#\/sweeps\/([\w-]+)$/, sweepView, "sweeps"],
  [/^#\/sweeps$/, sweepsView, "sweeps"],
  [/^#?\/?$/, jobsView, "jobs"],
];

let current = null;

function route() {
  if (current) current.abort();
  current = new AbortController();
  const root = document.getElementById("view");
  root.replaceChildren();
  const signedIn = Boolean(token.get());
  document.getElementById("signout").hidden = !signedIn;
  document.getElementById("nav").hidden = !signedIn;
  if (!signedIn) {
    loginView(root, current.signal, () => route());
    return;
  }
  const hash = location.hash || "#/";
  for (const [pattern, view, nav] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      markNav(nav);
      view(root, current.signal, ...match.slice(1));
      return;
    }
  }
  root.append(el("p", { class: "empty" }, "No such page. ", el("a", { href: "#/" }, "Jobs")));
}

function markNav(active) {
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.nav === active);
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("gradtrace:signed-out", route);
document.getElementById("signout").addEventListener("click", () => {
  token.clear();
  route();
});
route();
