// jobq-client.js: a small browser client of the jobq HTTP API, as a native ES module (no build step).
// It takes an API base URL and a browser token (minted by the app's backend with POST /v1/tokens) and sends
// it as a bearer header, or as ?access_token= on the event stream (EventSource cannot send a header).

export class JobqError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.name = "JobqError";
    this.status = status;
    this.code = error.code || "http_error";
    this.field = error.field || null;
  }
}

export class JobqClient {
  /** @param {{url: string, token: string, fetch?: typeof fetch}} options */
  constructor({ url, token, fetch: fetchImpl }) {
    this.url = String(url).replace(/\/+$/, "");
    this.token = token;
    this._fetch = fetchImpl || globalThis.fetch.bind(globalThis);
  }

  setToken(token) {
    this.token = token;
  }

  async _call(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    const init = { method, headers, credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await this._fetch(this.url + path, init);
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new JobqError(response.status, data);
    return data;
  }

  /** Submit a job: `options` takes the API's other fields (tags, priority, delay_seconds, ...). */
  submit(type, payload, options = {}) {
    return this._call("POST", "/v1/jobs", { ...options, type, payload });
  }

  get(id) {
    return this._call("GET", `/v1/jobs/${encodeURIComponent(id)}`);
  }

  /** A page of the caller's jobs, newest first: {jobs, cursor}. */
  list({ tag, state, type, cursor, limit } = {}) {
    return this._call("GET", "/v1/jobs" + query({ tag, state, type, cursor, limit }));
  }

  cancel(id) {
    return this._call("DELETE", `/v1/jobs/${encodeURIComponent(id)}`);
  }

  retry(id) {
    return this._call("POST", `/v1/jobs/${encodeURIComponent(id)}/retry`);
  }

  /**
   * Live changes to the caller's jobs (GET /v1/events): `onJob(update)` for each one, with its state,
   * progress and new log lines (`logs_reset`: replace the lines shown). The server ends each stream after a
   * while; the browser reconnects and resumes (Last-Event-ID). `onError({status, message})` when the token
   * is refused (expired: call `setToken` and `stream` again). Returns {close()}.
   */
  stream({ tag, queue, onJob, onOpen, onError } = {}) {
    const source = new EventSource(
      this.url + "/v1/events" + query({ tag, queue, access_token: this.token }),
    );
    source.addEventListener("hello", () => onOpen && onOpen());
    source.addEventListener("job", (event) => onJob && onJob(JSON.parse(event.data)));
    source.addEventListener("error", (event) => {
      // A server-sent `error` event carries data; a failed connection does not. A refused token (401)
      // closes the source: the browser does not retry it.
      if (event.data) {
        const problem = JSON.parse(event.data);
        onError && onError({ status: 0, code: problem.code, message: problem.message });
      } else if (source.readyState === EventSource.CLOSED) {
        onError && onError({ status: 401, code: "unauthorized", message: "the event stream was refused" });
      }
    });
    return { close: () => source.close() };
  }
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
