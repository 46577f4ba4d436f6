// The jobq API: the admin credential (this tab only) and one fetch with a timeout and the error shape.

import { clearBanner } from "./notices.js";

const TOKEN_KEY = "jobq.dashboard.token";
const REQUEST_TIMEOUT_MS = 10000;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const token = () => sessionStorage.getItem(TOKEN_KEY);
export const keepToken = (credential) => sessionStorage.setItem(TOKEN_KEY, credential);
export const forgetToken = () => sessionStorage.removeItem(TOKEN_KEY);

export async function api(path, { method = "GET", body, credential } = {}) {
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
