// The Queues view (#/): totals, the last hour's throughput, and every queue.

import { api } from "./api.js";
import { h, svg } from "./dom.js";
import { fmtNumber, fmtSeconds } from "./format.js";
import { mount, placeholder } from "./page.js";
import { STATES } from "./states.js";

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

export function overviewView() {
  placeholder("Loading queues…");
  let last = "";
  return {
    name: "overview",
    wants: () => true,
    refresh: async (fresh) => {
      const data = await api("/v1/queues");
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
