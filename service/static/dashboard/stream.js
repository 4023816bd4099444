// The job's live event stream, read with fetch() and a ReadableStream: EventSource cannot
// send an Authorization header, and the token must never travel in a URL.

import { authHeaders, ApiError } from "./api.js";

const RETRY_MS = 1500;

// Calls handlers.status / handlers.epoch / handlers.done with parsed JSON until `done`
// arrives or `signal` aborts; reconnects with Last-Event-ID when the server ends a stream.
export async function followJob(jobId, lastEpoch, handlers, signal) {
  let last = lastEpoch;
  while (!signal.aborted) {
    try {
      const done = await readOnce(jobId, last, (event) => {
        if (event.id !== null) last = Number(event.id);
        const handler = handlers[event.event];
        if (handler) handler(JSON.parse(event.data));
      }, signal);
      if (done) return;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError) {
        if (handlers.error) handlers.error(error);
        return;
      }
    }
    await sleep(RETRY_MS, signal);
  }
}

async function readOnce(jobId, last, onEvent, signal) {
  const headers = authHeaders({ Accept: "text/event-stream" });
  if (last > 0) headers["Last-Event-ID"] = String(last);
  const resp = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, { headers, signal });
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    throw new ApiError(resp.status, body.error?.code, body.error?.message || resp.statusText);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let sawDone = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return sawDone;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (event === null) continue;
      onEvent(event);
      if (event.event === "done") sawDone = true;
    }
  }
}

// One SSE block -> {event, id, data}, or null for a comment-only block (": ping").
export function parseEvent(block) {
  const event = { event: "message", id: null, data: [] };
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.event = value;
    else if (field === "id") event.id = value;
    else if (field === "data") event.data.push(value);
  }
  if (event.data.length === 0) return null;
  event.data = event.data.join("\n");
  return event;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
