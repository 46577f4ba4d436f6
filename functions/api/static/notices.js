// The banner (outages, failed actions, confirmations of what happened) and the confirmation dialog.

import { $ } from "./dom.js";

export let bannerKind = null;

export function showBanner(message, kind) {
  const banner = $("#banner");
  banner.textContent = message;
  banner.dataset.kind = kind;
  banner.hidden = false;
  bannerKind = kind;
}

export function clearBanner(kind) {
  if (kind && bannerKind !== kind) return;
  $("#banner").hidden = true;
  bannerKind = null;
}

export function explain(error) {
  if (error.status === 0) return "Cannot reach the jobq API. Check that it is running; retrying.";
  if (error.status === 503) return "Redis is unavailable (the API answered 503). Figures may be stale; retrying.";
  if (error.status >= 500) return `The API failed (HTTP ${error.status}): ${error.message}`;
  return error.message;
}

export function confirmAction(title, text, okLabel) {
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
