// jobq dashboard: one page, no build step. Job data is hostile input: it only ever becomes text
// (textContent / text nodes), never markup. See docs/dashboard.md.
"use strict";

const TOKEN_KEY = "jobq.dashboard.token";
const STATES = ["waiting", "delayed", "active", "completed", "failed", "cancelled"];
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const REQUEST_TIMEOUT_MS = 10000;
const POLL_MS = 5000; // fallback refresh when the stream cannot be used
const HELLO_TIMEOUT_MS = 5000; // a stream that says nothing this long is buffered (API Gateway): poll
const STREAM_RETRY_IN_POLLING_MS = 60000;
const REFRESH_DEBOUNCE_MS = 1000; // at most one reload a second: each overview read runs the stats script
const PAGE_SIZE = 25;

// -- DOM helpers ---------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  return el;
}

const $ = (selector) => document.querySelector(selector);

function fmtNumber(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en");
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString("en-GB", { hour12: false });
}

function timeEl(iso) {
  return iso ? h("time", { datetime: iso, text: fmtTime(iso) }) : "–";
}

const BADGE_STATES = [...STATES, "waiting-children"]; // a flow's parent waiting for its children

function stateBadge(state) {
  return h("span", { class: `badge state-${BADGE_STATES.includes(state) ? state : "unknown"}`, text: state });
}

function pretty(value) {
  if (value === null || value === undefined) return "null";
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

// -- API -------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

async function api(path, { method = "GET", body, credential } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  const headers = { Authorization: `Bearer ${credential || token() || ""}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "unreachable", "The jobq API is unreachable (network error or timeout).");
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "error", error.message || `HTTP ${response.status}`);
  }
  clearBanner("outage");
  return data;
}

// -- banner, errors, login -------------------------------------------------------------------------

let bannerKind = null;

function showBanner(message, kind) {
  const banner = $("#banner");
  banner.textContent = message;
  banner.dataset.kind = kind;
  banner.hidden = false;
  bannerKind = kind;
}

function clearBanner(kind) {
  if (kind && bannerKind !== kind) return;
  $("#banner").hidden = true;
  bannerKind = null;
}

function explain(error) {
  if (error.status === 0) return "Cannot reach the jobq API. Check that it is running; retrying.";
  if (error.status === 503) return "Redis is unavailable (the API answered 503). Figures may be stale; retrying.";
  if (error.status >= 500) return `The API failed (HTTP ${error.status}): ${error.message}`;
  return error.message;
}

function handleError(error, kind = "outage") {
  if (!(error instanceof ApiError)) {
    showBanner(`Unexpected error: ${error.message || error}`, "action");
    return;
  }
  if (error.status === 401 || error.status === 403) {
    const why =
      error.status === 401
        ? "Your credential was not accepted (401): it is invalid, expired or revoked. Sign in again."
        : "This credential is not an admin (403). The dashboard needs an admin key, the admin token or an admin JWT.";
    logout(why);
    return;
  }
  const outage = error.status === 0 || error.status >= 500;
  showBanner(explain(error), outage ? "outage" : kind);
}

function showLogin(message) {
  $("#login").hidden = false;
  $("#view").replaceChildren();
  $("#logout").hidden = true;
  $("#search").hidden = true;
  $("#live").hidden = true; // nothing is followed before sign-in: no "Offline" for an API that is up
  const box = $("#login-error");
  box.textContent = message || "";
  box.hidden = !message;
  $("#token").focus();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  live.stop();
  clearBanner();
  setLiveMode("off");
  showLogin(message);
}

async function login(event) {
  event.preventDefault();
  const input = $("#token");
  const credential = input.value.trim();
  if (!credential) return;
  const button = event.target.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await api("/v1/dashboard/overview", { credential });
  } catch (error) {
    const box = $("#login-error");
    box.hidden = false;
    if (error.status === 401) box.textContent = "That credential was not accepted (401).";
    else if (error.status === 403) box.textContent = "That credential is not an admin (403).";
    else box.textContent = explain(error);
    return;
  } finally {
    button.disabled = false;
  }
  sessionStorage.setItem(TOKEN_KEY, credential);
  input.value = "";
  start();
}

function start() {
  $("#login").hidden = true;
  $("#logout").hidden = false;
  $("#search").hidden = false;
  $("#live").hidden = false;
  route();
  live.start();
}

// -- confirmation dialog -------------------------------------------------------------------------

function confirmAction(title, text, okLabel) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      dialog.removeEventListener("close", onClose);
      resolve(answer);
    };
    const onClose = () => done(dialog.returnValue === "ok");
    dialog.addEventListener("close", onClose);
    dialog.returnValue = "";
    dialog.showModal();
    $("#confirm-cancel").focus();
  });
}

// -- routing -----------------------------------------------------------------------------------------

let current = { name: "none", refresh: async () => {}, wants: () => false };
let renderSeq = 0;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

function route() {
  if (!token()) {
    showLogin();
    return;
  }
  if (bannerKind !== "outage") clearBanner();
  const { parts, params } = parseHash();
  if (parts[0] === "queue" && parts[1]) current = queueView(parts[1], params);
  else if (parts[0] === "job" && parts[1]) current = jobView(parts[1]);
  else current = overviewView();
  refreshNow();
}

async function refreshNow() {
  const seq = ++renderSeq;
  const view = $("#view");
  view.setAttribute("aria-busy", "true");
  try {
    await current.refresh(() => seq === renderSeq);
  } catch (error) {
    handleError(error);
  } finally {
    if (seq === renderSeq) view.removeAttribute("aria-busy");
  }
}

let refreshTimer = null;
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshNow();
  }, REFRESH_DEBOUNCE_MS);
}

function mount(...nodes) {
  const view = $("#view");
  const loading = view.querySelector(".loading");
  if (loading) loading.remove();
  view.replaceChildren(...nodes);
}

function placeholder(text) {
  $("#view").replaceChildren(h("p", { class: "loading", text }));
}

// -- charts ------------------------------------------------------------------------------------------

function throughputChart(points, { width, height, label }) {
  const max = Math.max(1, ...points.map((p) => p.completed + p.failed));
  const step = points.length > 1 ? width / (points.length - 1) : width;
  const y = (v) => (height - 2 - (v / max) * (height - 4)).toFixed(1);
  const line = (key) => points.map((p, i) => `${(i * step).toFixed(1)},${y(p[key])}`).join(" ");
  const completed = points.reduce((s, p) => s + p.completed, 0);
  const failed = points.reduce((s, p) => s + p.failed, 0);
  const summary = `${label}: ${completed} completed, ${failed} failed in the last hour; peak ${max} per minute`;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "chart" });
  chart.setAttribute("aria-label", summary);
  const title = svg("title");
  title.textContent = summary;
  chart.append(title, svg("line", { x1: 0, y1: height - 1, x2: width, y2: height - 1, class: "axis" }));
  if (failed > 0) chart.append(svg("polyline", { points: line("failed"), class: "line-failed" }));
  chart.append(svg("polyline", { points: line("completed"), class: "line-completed" }));
  return chart;
}

// -- overview ---------------------------------------------------------------------------------------

function overviewView() {
  placeholder("Loading queues…");
  let last = "";
  return {
    name: "overview",
    wants: () => true,
    refresh: async (fresh) => {
      const data = await api("/v1/dashboard/overview");
      if (!fresh()) return;
      const snapshot = JSON.stringify(data);
      if (snapshot === last) return;
      last = snapshot;
      mount(renderOverview(data));
    },
  };
}

function renderOverview(data) {
  const totals = data.totals;
  const perMinute = totals.throughput.slice(-5).reduce((s, p) => s + p.completed + p.failed, 0) / 5;
  const cards = h(
    "div",
    { class: "cards" },
    card("Queues", fmtNumber(data.queues.length)),
    card("Waiting", fmtNumber(totals.counts.waiting)),
    card("Active", fmtNumber(totals.counts.active)),
    card("Failed (dead letter)", fmtNumber(totals.counts.failed)),
    card("Jobs / min (last 5 min)", perMinute.toFixed(1)),
  );
  const chart = h(
    "figure",
    { class: "panel" },
    h("figcaption", {}, "Throughput, last hour (jobs finished per minute) ", legend()),
    throughputChart(totals.throughput, { width: 720, height: 96, label: "All queues" }),
    h("div", { class: "axis-labels" }, h("span", { text: "60 min ago" }), h("span", { text: "now" })),
  );
  const head = h(
    "tr",
    {},
    h("th", { scope: "col", text: "Queue" }),
    STATES.map((s) => h("th", { scope: "col", class: "num", text: s })),
    h("th", { scope: "col", text: "Last hour" }),
    h("th", { scope: "col", class: "num", text: "Run p50 / p95" }),
    h("th", { scope: "col", class: "num", text: "Wait p50 / p95" }),
    h("th", { scope: "col", class: "num", text: "Oldest waiting" }),
  );
  const rows = data.queues.map((q) =>
    h(
      "tr",
      { "data-queue": q.queue },
      h(
        "th",
        { scope: "row" },
        h("a", { href: `#/queue/${encodeURIComponent(q.queue)}`, text: q.queue }),
        q.paused ? h("span", { class: "badge paused", text: "paused" }) : null,
        q.stalled ? h("span", { class: "badge stalled", title: q.stalled, text: "stalled" }) : null,
      ),
      STATES.map((s) =>
        h("td", { class: `num count-${s}`, "data-state": s, text: fmtNumber(q.counts[s] || 0) }),
      ),
      h("td", {}, throughputChart(q.throughput, { width: 120, height: 24, label: q.queue })),
      h("td", { class: "num", text: `${fmtSeconds(q.run_p50_seconds)} / ${fmtSeconds(q.run_p95_seconds)}` }),
      h("td", { class: "num", text: `${fmtSeconds(q.wait_p50_seconds)} / ${fmtSeconds(q.wait_p95_seconds)}` }),
      h("td", { class: "num", text: fmtSeconds(q.oldest_waiting_age) }),
    ),
  );
  const table = data.queues.length
    ? h(
        "div",
        { class: "table-wrap" },
        h("table", { id: "queues" }, h("caption", { text: "Queues" }), h("thead", {}, head), h("tbody", {}, rows)),
      )
    : h("p", { class: "empty", text: "No queue has had a job yet. Submit one and it appears here." });
  return h("section", { "aria-labelledby": "overview-title" }, h("h1", { id: "overview-title", text: "Queues" }), cards, chart, table);
}

function card(label, value) {
  return h("div", { class: "card" }, h("div", { class: "card-value", text: value }), h("div", { class: "card-label", text: label }));
}

function legend() {
  return h(
    "span",
    { class: "legend" },
    h("span", { class: "key key-completed", text: "completed" }),
    h("span", { class: "key key-failed", text: "failed" }),
  );
}

// -- a queue's jobs -------------------------------------------------------------------------------

function queueHash(name, params) {
  const query = new URLSearchParams();
  for (const key of ["state", "type", "owner"]) if (params[key]) query.set(key, params[key]);
  const q = query.toString();
  return `#/queue/${encodeURIComponent(name)}${q ? `?${q}` : ""}`;
}

function queueView(name, params) {
  placeholder(`Loading queue ${name}…`);
  const filters = {
    state: STATES.includes(params.get("state")) ? params.get("state") : "waiting",
    type: params.get("type") || "",
    owner: params.get("owner") || "",
  };
  const pages = [null]; // cursors of the pages visited: pages[i] fetches page i
  let last = "";
  const view = {
    name: "queue",
    wants: (event) => event.queue === name,
    refresh: async (fresh) => {
      const query = new URLSearchParams({ state: filters.state, limit: String(PAGE_SIZE) });
      if (filters.type) query.set("type", filters.type);
      if (filters.owner) query.set("owner", filters.owner);
      const cursor = pages[pages.length - 1];
      if (cursor) query.set("cursor", cursor);
      const q = encodeURIComponent(name);
      const [overview, page] = await Promise.all([
        api("/v1/dashboard/overview"),
        api(`/v1/dashboard/queues/${q}/jobs?${query}`),
      ]);
      if (!fresh()) return;
      const queue = overview.queues.find((item) => item.queue === name) || {
        queue: name,
        paused: false,
        counts: {},
      };
      const snapshot = JSON.stringify([queue.paused, queue.stalled, queue.counts, page, pages.length]);
      if (snapshot === last) return;
      last = snapshot;
      mount(renderQueue(queue, filters, page, pages, () => refreshNow()));
    },
  };
  return view;
}

function renderQueue(queue, filters, page, pages, rerender) {
  const name = queue.queue;
  const actions = h(
    "div",
    { class: "actions" },
    queue.paused
      ? h("button", { type: "button", class: "primary", onclick: () => queueAction(name, "resume"), text: "Resume" })
      : h("button", { type: "button", onclick: () => queueAction(name, "pause"), text: "Pause" }),
    h("button", {
      type: "button",
      disabled: !(queue.counts.failed > 0),
      onclick: () => retryAllFailed(name, queue.counts.failed || 0),
      text: "Retry all failed",
    }),
    cleanForm(name),
  );
  const tabs = h(
    "nav",
    { class: "tabs", "aria-label": "Job states" },
    STATES.map((state) =>
      h(
        "a",
        {
          href: queueHash(name, { ...filters, state }),
          "aria-current": state === filters.state ? "page" : null,
        },
        `${state} `,
        h("span", { class: "tab-count", text: fmtNumber(queue.counts[state] || 0) }),
      ),
    ),
  );
  const filterForm = h(
    "form",
    {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        const form = new FormData(event.target);
        location.hash = queueHash(name, { state: filters.state, type: form.get("type").trim(), owner: form.get("owner").trim() });
      },
    },
    h("label", { for: "filter-type", text: "Type" }),
    h("input", { id: "filter-type", name: "type", value: filters.type, autocomplete: "off" }),
    h("label", { for: "filter-owner", text: "Owner" }),
    h("input", { id: "filter-owner", name: "owner", value: filters.owner, autocomplete: "off" }),
    h("button", { type: "submit", text: "Filter" }),
    filters.type || filters.owner ? h("a", { href: queueHash(name, { state: filters.state }), text: "Clear" }) : null,
  );
  const rows = page.jobs.map((job) =>
    h(
      "tr",
      { "data-job": job.id },
      h("td", { class: "mono" }, h("a", { href: `#/job/${encodeURIComponent(job.id)}`, text: job.id })),
      h("td", { text: job.type }),
      h("td", { text: job.owner }),
      h("td", {}, stateBadge(job.state)),
      h("td", { class: "num", text: `${job.attempts} / ${job.max_attempts}` }),
      h("td", {}, h("progress", { max: 100, value: job.progress, "aria-label": `progress ${job.progress}%` })),
      h("td", {}, timeEl(job.created_at)),
      h("td", { class: "clip", text: job.error && job.state !== "completed" ? job.error.message : "" }),
    ),
  );
  const table = page.jobs.length
    ? h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "jobs" },
          h("caption", { text: `${filters.state} jobs, newest first` }),
          h(
            "thead",
            {},
            h("tr", {}, ["Id", "Type", "Owner", "State", "Attempts", "Progress", "Created", "Last error"].map((t) => h("th", { scope: "col", text: t }))),
          ),
          h("tbody", {}, rows),
        ),
      )
    : h("p", { class: "empty", text: `No ${filters.state} jobs${filters.type || filters.owner ? " match these filters" : ""}.` });
  const pager = h(
    "div",
    { class: "pager" },
    h("button", {
      type: "button",
      disabled: pages.length < 2,
      onclick: () => {
        pages.pop();
        rerender();
      },
      text: "← Previous",
    }),
    h("span", { text: `Page ${pages.length}` }),
    h("button", {
      type: "button",
      disabled: !page.cursor,
      onclick: () => {
        pages.push(page.cursor);
        rerender();
      },
      text: "Next →",
    }),
  );
  return h(
    "section",
    { "aria-labelledby": "queue-title" },
    h("p", { class: "crumbs" }, h("a", { href: "#/", text: "Queues" }), " / ", name),
    h(
      "h1",
      { id: "queue-title" },
      name,
      " ",
      h("span", { id: "paused-flag", class: `badge ${queue.paused ? "paused" : "running"}`, text: queue.paused ? "paused" : "running" }),
    ),
    queue.stalled ? h("p", { class: "banner stalled", role: "status", text: queue.stalled }) : null,
    actions,
    tabs,
    filterForm,
    table,
    pager,
  );
}

function cleanForm(name) {
  return h(
    "form",
    {
      class: "clean",
      onsubmit: async (event) => {
        event.preventDefault();
        const form = new FormData(event.target);
        const state = form.get("state");
        const minutes = Number(form.get("age")) || 0;
        const age = minutes ? `older than ${minutes} min` : "of any age";
        if (!(await confirmAction(`Clean ${state} jobs?`, `Delete up to 1000 ${state} jobs ${age} from queue “${name}”. This cannot be undone.`, "Delete jobs"))) return;
        await act(async () => {
          const result = await api(`/v1/queues/${encodeURIComponent(name)}/clean`, {
            method: "POST",
            body: { state, older_than_seconds: minutes * 60 },
          });
          return `Removed ${result.count} ${state} jobs.`;
        });
      },
    },
    h("label", { for: "clean-state", text: "Clean" }),
    h("select", { id: "clean-state", name: "state" }, ["completed", "failed", "cancelled"].map((s) => h("option", { value: s, text: s }))),
    h("label", { for: "clean-age", text: "older than (min)" }),
    h("input", { id: "clean-age", name: "age", type: "number", min: 0, value: 60, class: "short" }),
    h("button", { type: "submit", class: "danger", text: "Clean…" }),
  );
}

async function act(work) {
  try {
    const message = await work();
    if (message) showBanner(message, "info");
  } catch (error) {
    handleError(error, "action");
  }
  await refreshNow();
}

async function queueAction(name, action) {
  await act(async () => {
    await api(`/v1/queues/${encodeURIComponent(name)}/${action}`, { method: "POST" });
    return null;
  });
}

async function retryAllFailed(name, failed) {
  const text = `Move up to 1000 of the ${failed} failed jobs of “${name}” back to waiting.`;
  if (!(await confirmAction("Retry all failed jobs?", text, "Retry all"))) return;
  await act(async () => {
    const result = await api(`/v1/queues/${encodeURIComponent(name)}/retry-failed`, { method: "POST" });
    return `Retried ${result.count} failed jobs.`;
  });
}

// -- a job -------------------------------------------------------------------------------------------

function jobView(id) {
  placeholder(`Loading job ${id}…`);
  let last = "";
  return {
    name: "job",
    wants: (event) => event.job_id === id,
    refresh: async (fresh) => {
      let job;
      try {
        job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
      } catch (error) {
        if (error.status !== 404) throw error;
        if (fresh()) mount(h("section", {}, h("h1", { text: "Job not found" }), h("p", { text: `No job has the id “${id}”.` })));
        return;
      }
      // A flow's parent: its tree, every node with its state (GET /v1/flows, one read per level).
      const flow = job.children && job.children.length ? await api(`/v1/flows/${encodeURIComponent(id)}`) : null;
      if (!fresh()) return;
      const snapshot = JSON.stringify([job, flow]);
      if (snapshot === last) return;
      last = snapshot;
      const open = document.querySelector("#curl-box")?.open;
      mount(renderJob(job, flow));
      if (open) $("#curl-box").open = true;
    },
  };
}

function timeline(job) {
  const scheduled = job.run_at && Date.parse(job.run_at) - Date.parse(job.created_at) >= 1000;
  const items = [{ at: job.created_at, what: "created", detail: scheduled ? `to run at ${fmtTime(job.run_at)}` : "" }];
  for (const error of job.errors || []) {
    items.push({ at: error.at, what: `attempt ${error.attempt} failed`, detail: `${error.kind}: ${error.message}`, bad: true });
  }
  if (job.started_at) items.push({ at: job.started_at, what: `attempt ${job.attempts} started`, detail: "" });
  if (job.finished_at) items.push({ at: job.finished_at, what: job.state, detail: "", bad: job.state !== "completed" });
  else items.push({ at: null, what: `now ${job.state}`, detail: job.cancel_requested ? "cancel requested" : "" });
  items.sort((a, b) => (a.at && b.at ? a.at.localeCompare(b.at) : a.at ? -1 : 1));
  return h(
    "ol",
    { class: "timeline" },
    items.map((item) =>
      h("li", { class: item.bad ? "bad" : "" }, item.at ? timeEl(item.at) : h("span", { text: "—" }), " ", h("strong", { text: item.what }), item.detail ? ` ${item.detail}` : ""),
    ),
  );
}

function shellQuote(text) {
  return `'${String(text).replace(/'/g, "'\\''")}'`;
}

function curlFor(job) {
  const body = { type: job.type, payload: job.payload, priority: job.priority };
  if (job.tags && job.tags.length) body.tags = job.tags;
  if (job.metadata && Object.keys(job.metadata).length) body.metadata = job.metadata;
  return [
    `curl -sS -X POST ${shellQuote(`${location.origin}/v1/jobs`)}`,
    `  -H "Authorization: Bearer $JOBQ_TOKEN" -H 'Content-Type: application/json'`,
    `  -d ${shellQuote(JSON.stringify(body))}`,
  ].join(" \\\n");
}

function jobLink(job) {
  return h("a", { href: `#/job/${encodeURIComponent(job.id)}`, class: "mono", text: job.id });
}

// The flow panel: the tree under this job (its children, theirs, ...) and the jobs waiting on it.
function flowPanel(job, flow) {
  const parents = job.parents || [];
  const waitsOn = job.depends_on || [];
  if (!flow && !parents.length && !waitsOn.length) return null;
  const node = (item) =>
    h(
      "li",
      {},
      h("strong", { text: item.job.type }),
      " ",
      jobLink(item.job),
      " ",
      stateBadge(item.job.state),
      item.children.length ? h("ul", { class: "flow-tree" }, item.children.map(node)) : null,
    );
  return h(
    "div",
    { class: "panel", id: "job-flow" },
    h("h2", { text: "Flow" }),
    flow ? h("ul", { class: "flow-tree" }, node(flow)) : null,
    job.state === "waiting-children" ? h("p", { text: `Waiting for ${job.pending_children} more to end.` }) : null,
    waitsOn.length ? h("p", {}, "Depends on ", waitsOn.map((depId) => [jobLink({ id: depId }), " "])) : null,
    parents.length
      ? h("p", {}, "Waiting on this job: ", parents.map((p) => [jobLink(p), ` (on failure: ${p.policy}) `]))
      : null,
  );
}

function renderJob(job, flow) {
  const facts = [
    ["Queue", h("a", { href: `#/queue/${encodeURIComponent(job.queue)}?state=${job.state}`, text: job.queue })],
    ["Type", job.type],
    ["Owner", job.owner],
    ["Priority", job.priority],
    ["Attempts", `${job.attempts} / ${job.max_attempts}`],
    ["Timeout", fmtSeconds(job.timeout_seconds)],
    ["Created", timeEl(job.created_at)],
    ["Started", timeEl(job.started_at)],
    ["Finished", timeEl(job.finished_at)],
  ];
  if (job.idempotency_key) facts.push(["Idempotency key", job.idempotency_key]);
  if (job.tags && job.tags.length) facts.push(["Tags", job.tags.join(", ")]);
  const curl = curlFor(job);
  const copy = async () => {
    const box = $("#curl-box");
    box.open = true;
    try {
      await navigator.clipboard.writeText(curl);
      showBanner("Copied a curl command that submits this job again (set JOBQ_TOKEN first).", "info");
    } catch {
      const text = $("#curl-text");
      text.focus();
      text.select();
      showBanner("The browser refused clipboard access: the command is selected below, press Ctrl+C.", "info");
    }
  };
  const actions = h(
    "div",
    { class: "actions" },
    h("button", {
      type: "button",
      class: "primary",
      disabled: !(job.state === "failed" || job.state === "cancelled"),
      onclick: () => act(async () => {
        await api(`/v1/jobs/${encodeURIComponent(job.id)}/retry`, { method: "POST" });
        return "Job sent back to waiting.";
      }),
      text: "Retry",
    }),
    h("button", {
      type: "button",
      class: "danger",
      disabled: TERMINAL.has(job.state) || job.cancel_requested,
      onclick: async () => {
        if (!(await confirmAction("Cancel this job?", `Job ${job.id} (${job.type}) will not run (again). A running attempt is asked to stop.`, "Cancel job"))) return;
        await act(async () => {
          await api(`/v1/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
          return "Cancellation requested.";
        });
      },
      text: "Cancel",
    }),
    h("button", { type: "button", onclick: copy, text: "Copy as curl" }),
  );
  const errors = (job.errors || []).slice().reverse();
  return h(
    "section",
    { "aria-labelledby": "job-title", class: "job" },
    h("p", { class: "crumbs" }, h("a", { href: "#/", text: "Queues" }), " / ", h("a", { href: `#/queue/${encodeURIComponent(job.queue)}`, text: job.queue }), " / job"),
    h("h1", { id: "job-title" }, h("span", { class: "mono", text: job.id }), " ", h("span", { id: "job-state" }, stateBadge(job.state))),
    actions,
    h(
      "details",
      { id: "curl-box" },
      h("summary", { text: "curl command" }),
      h("textarea", { id: "curl-text", readonly: true, rows: 4, "aria-label": "curl command", text: curl }),
    ),
    h(
      "div",
      { class: "progress-row" },
      h("label", { for: "job-progress", text: "Progress" }),
      h("progress", { id: "job-progress", max: 100, value: job.progress }),
      h("span", { text: `${job.progress}%` }),
    ),
    h("div", { class: "grid" },
      h("div", { class: "panel" }, h("h2", { text: "Details" }), h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]))),
      h("div", { class: "panel" }, h("h2", { text: "Timeline" }), timeline(job)),
    ),
    flowPanel(job, flow),
    h("div", { class: "grid" },
      h("div", { class: "panel" }, h("h2", { text: "Payload" }), h("pre", { id: "job-payload", text: pretty(job.payload) })),
      h("div", { class: "panel" }, h("h2", { text: "Result" }), h("pre", { id: "job-result", text: job.state === "completed" ? pretty(job.result) : "–" })),
    ),
    h("div", { class: "panel" },
      h("h2", { text: "Errors" }),
      errors.length
        ? h("ol", { class: "errors", reversed: true }, errors.map((e) => h("li", {}, h("strong", { text: `attempt ${e.attempt} · ${e.kind}` }), " ", timeEl(e.at), h("pre", { text: e.message }))))
        : h("p", { class: "empty", text: "No errors." }),
    ),
    h("div", { class: "panel" },
      h("h2", { text: "Log" }),
      job.logs && job.logs.length ? h("pre", { id: "job-logs", class: "logs", text: job.logs.join("\n") }) : h("p", { class: "empty", text: "No log lines." }),
    ),
  );
}

// -- live updates: SSE over fetch, or polling ---------------------------------------------------------

function setLiveMode(mode) {
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

const live = {
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
      const response = await fetch("/v1/dashboard/stream", { headers, signal: controller.signal, cache: "no-store" });
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
            if (events.some((e) => current.wants(e))) refreshSoon();
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

// -- wiring --------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", () => logout("Signed out."));
  $("#confirm-cancel").addEventListener("click", () => $("#confirm").close("cancel"));
  $("#confirm-ok").addEventListener("click", () => $("#confirm").close("ok"));
  $("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("#search-id").value.trim();
    if (id) location.hash = `#/job/${encodeURIComponent(id)}`;
  });
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => {
    if (!token()) return;
    if (document.hidden) live.stop();
    else {
      refreshNow();
      live.start();
    }
  });
  if (token()) start();
  else showLogin();
});
