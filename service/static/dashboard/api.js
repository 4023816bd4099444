// The /v1 API with the bearer token kept in sessionStorage (never in a URL).

const TOKEN_KEY = "gradtrace.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${token.get()}`, ...extra };
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = authHeaders(body === undefined ? {} : { "Content-Type": "application/json" });
  const resp = await fetch(path, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  return readResponse(resp);
}

async function readResponse(resp) {
  if (resp.status === 401) {
    token.clear();
    window.dispatchEvent(new Event("gradtrace:signed-out"));
  }
  const data = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (!resp.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(resp.status, error.code || "error",
      error.message || `${resp.status} ${resp.statusText}`);
  }
  return data;
}

export const jobs = {
  list: (params, signal) => api(`/v1/jobs?${new URLSearchParams(params)}`, { signal }),
  get: (id, signal) => api(`/v1/jobs/${encodeURIComponent(id)}`, { signal }),
  metrics: (id, maxPoints, signal) =>
    api(`/v1/jobs/${encodeURIComponent(id)}/metrics?max_points=${maxPoints}`, { signal }),
  cancel: (id) => api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" }),
};

export const sweeps = {
  list: (signal) => api("/v1/sweeps?limit=100", { signal }),
  get: (id, signal) => api(`/v1/sweeps/${encodeURIComponent(id)}`, { signal }),
  cancel: (id) => api(`/v1/sweeps/${encodeURIComponent(id)}/cancel`, { method: "POST" }),
};
