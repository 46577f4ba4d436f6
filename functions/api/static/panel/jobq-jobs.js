// <jobq-jobs>: the user's active and recent jobs with live progress and log lines, cancel and retry.
// A native ES module and custom element for another site's page (docs/panel.md):
//
//   <script type="module" src="https://jobs.example/panel/jobq-jobs.js"></script>
//   <jobq-jobs api="https://jobs.example" token="jqt_..." tag="session:42"></jobq-jobs>
//
// Safe under a strict Content-Security-Policy: no inline script or style attribute, no eval; its styles
// are a constructed stylesheet in its shadow root and job data only ever becomes text. Themed with CSS
// custom properties (--jobq-bg, --jobq-fg, --jobq-muted, --jobq-accent, --jobq-danger, --jobq-border,
// --jobq-radius, --jobq-font). Events: `jobq-job` (detail: the update), `jobq-token-expired` (set a new
// `token` attribute to carry on).

import { JobqClient } from "./jobq-client.js";

const ACTIVE = new Set(["waiting", "delayed", "active"]);
const RETRYABLE = new Set(["failed", "cancelled"]);
const LOG_LINES_SHOWN = 5;

const CSS = `
:host {
  display: block;
  font: 14px/1.4 var(--jobq-font, system-ui, sans-serif);
  color: var(--jobq-fg, #1d2230);
  background: var(--jobq-bg, #ffffff);
  border: 1px solid var(--jobq-border, #d8dce6);
  border-radius: var(--jobq-radius, 8px);
  max-width: 100%;
  overflow: hidden;
}
header { display: flex; justify-content: space-between; align-items: center; padding: 8px 12px;
  border-bottom: 1px solid var(--jobq-border, #d8dce6); font-weight: 600; }
.status { font-weight: 400; font-size: 12px; color: var(--jobq-muted, #697089); }
ul { list-style: none; margin: 0; padding: 0; }
li { padding: 8px 12px; border-bottom: 1px solid var(--jobq-border, #d8dce6); }
li:last-child { border-bottom: 0; }
.row { display: flex; gap: 8px; align-items: center; justify-content: space-between; flex-wrap: wrap; }
.type { flex: 1; font-weight: 600; overflow-wrap: anywhere; }
.state { font-size: 12px; padding: 1px 8px; border-radius: 999px; background: var(--jobq-border, #d8dce6); }
.state[data-state="active"] { background: var(--jobq-accent, #3b6ef5); color: var(--jobq-on-accent, #fff); }
.state[data-state="failed"] { background: var(--jobq-danger, #c2323a); color: var(--jobq-on-accent, #fff); }
progress { width: 100%; height: 6px; accent-color: var(--jobq-accent, #3b6ef5); }
pre { margin: 4px 0 0; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere;
  color: var(--jobq-muted, #697089); font-family: var(--jobq-mono, ui-monospace, monospace); }
pre:empty { display: none; }
.error { color: var(--jobq-danger, #c2323a); font-size: 12px; overflow-wrap: anywhere; }
.error:empty { display: none; }
button { font: inherit; font-size: 12px; border: 1px solid var(--jobq-border, #d8dce6);
  border-radius: calc(var(--jobq-radius, 8px) / 2); background: transparent; color: inherit;
  padding: 2px 10px; cursor: pointer; }
button.cancel { color: var(--jobq-danger, #c2323a); }
button.retry { color: var(--jobq-accent, #3b6ef5); }
button[hidden] { display: none; }
.empty { padding: 12px; color: var(--jobq-muted, #697089); }
`;

let sheet = null;
function styles() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  }
  return sheet;
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

export class JobqJobs extends HTMLElement {
  static observedAttributes = ["api", "token", "tag", "queue", "limit"];

  constructor() {
    super();
    this.jobs = new Map(); // id -> job as shown (JobPublic or the latest update merged in)
    this._stream = null;
    this._client = null;
    const root = this.attachShadow({ mode: "open" });
    root.adoptedStyleSheets = [styles()];
    this._status = el("span", { class: "status", part: "status" }, "Connecting");
    const header = el("header", { part: "header" });
    header.append(el("span", {}, this.getAttribute("heading") || "Background jobs"), this._status);
    this._list = el("ul", { part: "list" });
    this._empty = el("div", { class: "empty", part: "empty" }, "No background jobs yet");
    root.append(header, this._list, this._empty);
    this._list.addEventListener("click", (event) => this._onClick(event));
  }

  connectedCallback() {
    this._restart();
  }

  disconnectedCallback() {
    this._stop();
  }

  attributeChangedCallback(name, before, after) {
    if (before !== after && this.isConnected) this._restart();
  }

  /** The client the panel uses (the app may reuse it to submit jobs). */
  get client() {
    return this._client;
  }

  _stop() {
    if (this._stream) this._stream.close();
    this._stream = null;
  }

  async _restart() {
    this._stop();
    const api = this.getAttribute("api");
    const token = this.getAttribute("token");
    if (!api || !token) {
      this._setStatus("Not signed in");
      return;
    }
    this._client = new JobqClient({ url: api, token });
    const tag = this.getAttribute("tag") || undefined;
    const queue = this.getAttribute("queue") || undefined;
    // The stream first, then the list: a change between the two is not missed.
    this._stream = this._client.stream({
      tag,
      queue,
      onOpen: () => this._setStatus("Live"),
      onJob: (update) => this._onUpdate(update),
      onError: (problem) => this._onStreamError(problem),
    });
    try {
      const limit = Number(this.getAttribute("limit")) || 20;
      const page = await this._client.list({ tag, limit });
      for (const job of page.jobs.reverse()) {
        if (queue && job.queue !== queue) continue;
        if (!this.jobs.has(job.id)) this.jobs.set(job.id, job);
      }
      this._render();
    } catch (error) {
      this._onStreamError({ status: error.status, message: error.message });
    }
  }

  _setStatus(text) {
    this._status.textContent = text;
  }

  _onStreamError(problem) {
    if (problem.status === 401) {
      this._setStatus("Signed out");
      this._stop();
      this.dispatchEvent(new CustomEvent("jobq-token-expired", { bubbles: true, composed: true }));
    } else {
      this._setStatus(`Offline: ${problem.message}`);
    }
  }

  _onUpdate(update) {
    const shown = this.jobs.get(update.id) || {};
    const logs = update.logs_reset ? update.logs : [...(shown.logs || []), ...update.logs];
    const { logs_reset: _reset, ...fields } = update;
    this.jobs.set(update.id, { ...shown, ...fields, logs: logs.slice(-100) });
    this._render();
    this.dispatchEvent(new CustomEvent("jobq-job", { detail: update, bubbles: true, composed: true }));
  }

  async _onClick(event) {
    const button = event.target.closest("button");
    if (!button) return;
    const item = button.closest("li");
    const id = item.dataset.id;
    button.disabled = true;
    try {
      const job = button.classList.contains("cancel")
        ? await this._client.cancel(id)
        : await this._client.retry(id);
      this._onUpdate({ ...job, logs: job.logs, logs_reset: true });
    } catch (error) {
      item.querySelector(".error").textContent = error.message;
      if (error.status === 401) this._onStreamError({ status: 401, message: error.message });
    } finally {
      button.disabled = false;
    }
  }

  _render() {
    const limit = Number(this.getAttribute("limit")) || 20;
    const jobs = [...this.jobs.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    // Active jobs always show; finished ones up to the limit.
    const shown = jobs.filter((job, index) => ACTIVE.has(job.state) || index < limit);
    const keep = new Set(shown.map((job) => job.id));
    for (const id of [...this.jobs.keys()]) if (!keep.has(id)) this.jobs.delete(id);
    const items = new Map([...this._list.children].map((li) => [li.dataset.id, li]));
    shown.forEach((job, index) => {
      const li = items.get(job.id) || this._item(job.id);
      items.delete(job.id);
      this._fill(li, job);
      if (this._list.children[index] !== li) this._list.insertBefore(li, this._list.children[index] || null);
    });
    for (const li of items.values()) li.remove();
    this._empty.hidden = shown.length > 0;
  }

  _item(id) {
    const li = el("li", { "data-id": id, part: "job" });
    const row = el("div", { class: "row" });
    row.append(
      el("span", { class: "type", part: "type" }),
      el("span", { class: "state", part: "state" }),
      el("button", { class: "cancel", type: "button", part: "cancel" }, "Cancel"),
      el("button", { class: "retry", type: "button", part: "retry" }, "Retry"),
    );
    li.append(row, el("progress", { max: "100", part: "progress" }), el("pre", { part: "logs" }));
    li.append(el("div", { class: "error", part: "error" }));
    return li;
  }

  _fill(li, job) {
    li.dataset.state = job.state;
    li.querySelector(".type").textContent = job.type || job.id;
    const state = li.querySelector(".state");
    state.dataset.state = job.state;
    state.textContent = job.cancel_requested && job.state === "active" ? "cancelling" : job.state;
    const progress = li.querySelector("progress");
    progress.value = job.progress || 0;
    progress.hidden = job.state !== "active";
    li.querySelector("pre").textContent = (job.logs || []).slice(-LOG_LINES_SHOWN).join("\n");
    const failed = job.state === "failed" && job.error;
    li.querySelector(".error").textContent = failed ? job.error.message || "" : "";
    li.querySelector(".cancel").hidden = !ACTIVE.has(job.state) || job.cancel_requested;
    li.querySelector(".retry").hidden = !RETRYABLE.has(job.state);
  }
}

if (!customElements.get("jobq-jobs")) customElements.define("jobq-jobs", JobqJobs);
