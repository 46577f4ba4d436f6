// A job's view (#/job/<id>): state, progress, timeline, payload, result, errors, log; retry and cancel.

import { api } from "./api.js";
import { $, h } from "./dom.js";
import { fmtSeconds, fmtTime, pretty, stateBadge, timeEl } from "./format.js";
import { confirmAction, showBanner } from "./notices.js";
import { act, mount, placeholder } from "./page.js";
import { TERMINAL } from "./states.js";

export function jobView(id) {
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
