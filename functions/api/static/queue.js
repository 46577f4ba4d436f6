// A queue's view (#/queue/<name>?state=&type=&owner=): its jobs by state, filters and actions.

import { api } from "./api.js";
import { h } from "./dom.js";
import { fmtNumber, stateBadge, timeEl } from "./format.js";
import { confirmAction } from "./notices.js";
import { act, mount, placeholder, refreshNow } from "./page.js";
import { STATES, TERMINAL } from "./states.js";

const PAGE_SIZE = 25;

function queueHash(name, params) {
  const query = new URLSearchParams();
  for (const key of ["state", "type", "owner"]) if (params[key]) query.set(key, params[key]);
  const q = query.toString();
  return `#/queue/${encodeURIComponent(name)}${q ? `?${q}` : ""}`;
}

export function queueView(name, params) {
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
      const query = new URLSearchParams({ view: "summary", state: filters.state, limit: String(PAGE_SIZE) });
      if (filters.type) query.set("type", filters.type);
      if (filters.owner) query.set("owner", filters.owner);
      const cursor = pages[pages.length - 1];
      if (cursor) query.set("cursor", cursor);
      const q = encodeURIComponent(name);
      const [queue, page] = await Promise.all([api(`/v1/queues/${q}`), api(`/v1/queues/${q}/jobs?${query}`)]);
      if (!fresh()) return;
      const snapshot = JSON.stringify([queue.paused, queue.stalled, queue.counts, queue.ai, page, pages.length]);
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
    queue.ai ? aiFigures(queue.ai) : null,
    actions,
    tabs,
    filterForm,
    table,
    pager,
  );
}

// The response cache's answers and the usage recorded in the queue (docs/ai-jobs.md).
function aiFigures(ai) {
  const tokens = `${fmtNumber(ai.input_tokens)} in / ${fmtNumber(ai.output_tokens)} out`;
  const text = `Cache: ${fmtNumber(ai.cache_hits)} hits / ${fmtNumber(ai.cache_misses)} misses · Tokens: ${tokens} · Cost: $${ai.cost.toFixed(4)}`;
  return h("p", { id: "ai-figures", class: "crumbs", text });
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
    h("select", { id: "clean-state", name: "state" }, [...TERMINAL].map((s) => h("option", { value: s, text: s }))),
    h("label", { for: "clean-age", text: "older than (min)" }),
    h("input", { id: "clean-age", name: "age", type: "number", min: 0, value: 60, class: "short" }),
    h("button", { type: "submit", class: "danger", text: "Clean…" }),
  );
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
