// Live updates: the admin stream of every queue's changes, read with fetch() (EventSource cannot send
// a credential), or polling where the stream cannot be used (API Gateway buffers responses).

import { ApiError, token } from "./api.js";
import { $ } from "./dom.js";
import { handleError, refreshNow, refreshSoon, wants } from "./page.js";

const POLL_MS = 5000; // fallback refresh when the stream cannot be used
const HELLO_TIMEOUT_MS = 5000; // a stream that says nothing this long is buffered (API Gateway): poll
const STREAM_RETRY_IN_POLLING_MS = 60000;

export function setLiveMode(mode) {
  const badge = $("#live");
  badge.dataset.mode = mode;
  badge.textContent = { live: "Live", polling: `Polling every ${POLL_MS / 1000} s`, off: "Offline" }[mode];
}

function parseEvent(raw) {
  const event = { event: "message", data: "", id: null };
  for (const line of raw.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const key = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (key === "data") event.data += (event.data ? "\n" : "") + value;
    else if (key === "event") event.event = value;
    else if (key === "id") event.id = value;
    else if (key === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
  }
  return event;
}

export const live = {
  controller: null,
  lastId: null,
  retryMs: 2000,
  failures: 0,
  timer: null,
  pollTimer: null,

  start() {
    this.stop();
    if (!token() || document.hidden) return;
    this.connect();
  },

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    clearTimeout(this.timer);
    clearInterval(this.pollTimer);
    this.timer = this.pollTimer = null;
  },

  poll() {
    setLiveMode("polling");
    clearInterval(this.pollTimer);
    this.pollTimer = setInterval(refreshNow, POLL_MS);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), STREAM_RETRY_IN_POLLING_MS);
  },

  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    let hello = false;
    const helloTimer = setTimeout(() => {
      if (!hello) controller.abort("no-hello");
    }, HELLO_TIMEOUT_MS);
    try {
      const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
      if (this.lastId) headers["Last-Event-ID"] = this.lastId;
      const response = await fetch("/v1/events/queues", { headers, signal: controller.signal, cache: "no-store" });
      if (response.status === 401 || response.status === 403) {
        handleError(new ApiError(response.status, "auth", "not allowed"));
        return;
      }
      const type = response.headers.get("Content-Type") || "";
      if (!response.ok || !response.body || !type.startsWith("text/event-stream")) {
        throw new ApiError(response.status, "stream", `stream answered HTTP ${response.status}`);
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.retry) this.retryMs = event.retry;
          if (event.id) this.lastId = event.id;
          if (event.event === "hello") {
            hello = true;
            this.failures = 0;
            clearInterval(this.pollTimer);
            setLiveMode("live");
            refreshSoon(); // catch up on anything missed while reconnecting
          } else if (event.event === "jobs") {
            const { events } = JSON.parse(event.data);
            if (events.some(wants)) refreshSoon();
          } else if (event.event === "error") {
            const { message } = JSON.parse(event.data);
            throw new ApiError(503, "stream", message);
          }
        }
      }
      if (!hello) throw new ApiError(0, "stream", "the stream ended before it started");
    } catch (error) {
      if (this.controller !== controller) return; // stopped or replaced on purpose
      this.failures += 1;
      if (error instanceof ApiError && error.status >= 500) handleError(error);
      if (!hello || this.failures >= 3) {
        this.poll();
        return;
      }
    } finally {
      clearTimeout(helloTimer);
    }
    if (this.controller !== controller) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.failures ? this.retryMs : 0);
  },
};
