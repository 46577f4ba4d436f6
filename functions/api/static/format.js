// How figures, times, states and JSON read on the page.

import { h } from "./dom.js";
import { STATES } from "./states.js";

export function fmtNumber(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en");
}

export function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString("en-GB", { hour12: false });
}

export function timeEl(iso) {
  return iso ? h("time", { datetime: iso, text: fmtTime(iso) }) : "–";
}

export function stateBadge(state) {
  return h("span", { class: `badge state-${STATES.includes(state) ? state : "unknown"}`, text: state });
}

export function pretty(value) {
  if (value === null || value === undefined) return "null";
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}
