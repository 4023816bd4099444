// Sign in by pasting an API token; it is checked against the API before it is kept.

import { authHeaders, token } from "./api.js";
import { el } from "./dom.js";

export function loginView(root, signal, onSignedIn) {
  const input = el("input", { id: "token", type: "password", autocomplete: "off",
    placeholder: "gt_…", "aria-label": "API token", required: true });
  const message = el("p", { class: "error", role: "alert", hidden: true });
  const form = el("form", { class: "card login", onsubmit: submit },
    el("h1", {}, "Sign in"),
    el("p", { class: "muted" }, "Paste an API token (from ", el("code", {}, "gradtrace-admin"),
      "). It stays in this tab's session storage and is sent only in the Authorization header."),
    input, el("button", { type: "submit" }, "Sign in"), message);
  root.append(form);
  input.focus();

  async function submit(event) {
    event.preventDefault();
    token.set(input.value.trim());
    let problem;
    try {
      const resp = await fetch("/v1/jobs?limit=1", { headers: authHeaders(), signal });
      if (resp.ok) {
        onSignedIn();
        return;
      }
      problem = resp.status === 401 ? "That token was not accepted."
        : `The API answered ${resp.status}.`;
    } catch (error) {
      problem = `Could not reach the API: ${error.message}`;
    }
    token.clear();
    message.hidden = false;
    message.textContent = problem;
  }
}
