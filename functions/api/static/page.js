// The view on screen: loading it (latest request wins), reloading it, and reporting what went wrong.

import { ApiError } from "./api.js";
import { $, h } from "./dom.js";
import { explain, showBanner } from "./notices.js";

const REFRESH_DEBOUNCE_MS = 1000; // at most one reload a second: each queue read runs the stats script

let current = { name: "none", refresh: async () => {}, wants: () => false };
let renderSeq = 0;
let refreshTimer = null;
let signOut = () => {};

/** What a 401 or 403 does (main.js signs the user out). */
export function onAuthFailure(handler) {
  signOut = handler;
}

/** Show `view` ({ refresh(fresh), wants(event) }) and load it. */
export function show(view) {
  current = view;
  refreshNow();
}

/** Whether a live event concerns what is on screen. */
export const wants = (event) => current.wants(event);

export async function refreshNow() {
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

export function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshNow();
  }, REFRESH_DEBOUNCE_MS);
}

export function mount(...nodes) {
  const view = $("#view");
  const loading = view.querySelector(".loading");
  if (loading) loading.remove();
  view.replaceChildren(...nodes);
}

export function placeholder(text) {
  $("#view").replaceChildren(h("p", { class: "loading", text }));
}

export function handleError(error, kind = "outage") {
  if (!(error instanceof ApiError)) {
    showBanner(`Unexpected error: ${error.message || error}`, "action");
    return;
  }
  if (error.status === 401 || error.status === 403) {
    const why =
      error.status === 401
        ? "Your credential was not accepted (401): it is invalid, expired or revoked. Sign in again."
        : "This credential is not an admin (403). The dashboard needs an admin key, the admin token or an admin JWT.";
    signOut(why);
    return;
  }
  const outage = error.status === 0 || error.status >= 500;
  showBanner(explain(error), outage ? "outage" : kind);
}

export async function act(work) {
  try {
    const message = await work();
    if (message) showBanner(message, "info");
  } catch (error) {
    handleError(error, "action");
  }
  await refreshNow();
}
