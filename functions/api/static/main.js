// jobq dashboard: one page of native ES modules, no build step (docs/dashboard.md). This module signs in
// and out, and picks the view from the address after #.

import { api, forgetToken, keepToken, token } from "./api.js";
import { $ } from "./dom.js";
import { jobView } from "./job.js";
import { bannerKind, clearBanner, explain } from "./notices.js";
import { overviewView } from "./overview.js";
import { onAuthFailure, refreshNow, show } from "./page.js";
import { queueView } from "./queue.js";
import { live, setLiveMode } from "./stream.js";

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
  forgetToken();
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
    await api("/v1/queues", { credential });
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
  keepToken(credential);
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
  if (parts[0] === "queue" && parts[1]) show(queueView(parts[1], params));
  else if (parts[0] === "job" && parts[1]) show(jobView(parts[1]));
  else show(overviewView());
}

onAuthFailure(logout);
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
