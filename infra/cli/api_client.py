"""A small synchronous client of the jobq HTTP API for the CLI: one method per request, typed errors.

Every failure becomes an `ApiError` (the API answered with its error shape) or an `UnreachableError`
(nothing usable came back); the CLI turns both into a readable line and an exit code. The API key goes
only into the `Authorization` header and never into a message.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from infra.cli.errors import ApiError, CliError, UnreachableError, UsageError

# A bearer credential is a token68-like string; anything else would be rejected by the HTTP layer with
# an error message quoting the header, so refuse it here without echoing it.
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,4096}$")


class ApiClient:
    def __init__(self, url: str, key: str | None, *, timeout: float) -> None:
        if not re.match(r"^https?://[^\s/]+", url):
            raise UsageError(f"--url must be an http(s) URL, got {url!r}")
        headers = {"Accept": "application/json", "User-Agent": "jobq-cli"}
        if key:
            if not _KEY_PATTERN.match(key):
                raise UsageError("the API key (--key / JOBQ_API_KEY) contains spaces or invalid characters")
            headers["Authorization"] = f"Bearer {key}"
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; return the response when it is a success, raise a CliError otherwise."""
        query = {name: value for name, value in (params or {}).items() if value is not None}
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                params=query,
                timeout=self.timeout if timeout is None else timeout,
            )
        except httpx.TimeoutException as exc:
            reason = type(exc).__name__
            raise UnreachableError(f"jobq API at {self.url} did not answer in time ({reason})") from exc
        except httpx.TransportError as exc:
            raise UnreachableError(f"cannot reach jobq API at {self.url}: {_reason(exc)}") from exc
        if response.is_success:
            return response
        raise _api_error(response, self.url)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a successful request."""
        response = self.request(method, path, **kwargs)
        return _body(response, self.url)

    # Jobs (any credential: the caller's own jobs).

    def submit(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The job, and whether it was created (False: an idempotent repeat answered 200)."""
        response = self.request("POST", "/v1/jobs", json=body)
        return _body(response, self.url), response.status_code == 201

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/v1/jobs/{_segment(job_id)}"))

    def flow(self, job_id: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/v1/flows/{_segment(job_id)}"))

    def submit_flow(self, body: Any) -> dict[str, Any]:
        return dict(self.json("POST", "/v1/flows", json=body))

    def jobs(self, **params: Any) -> dict[str, Any]:
        return dict(self.json("GET", "/v1/jobs", params=params))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self.json("DELETE", f"/v1/jobs/{_segment(job_id)}"))

    def retry(self, job_id: str) -> dict[str, Any]:
        return dict(self.json("POST", f"/v1/jobs/{_segment(job_id)}/retry"))

    def wait_change(self, job_id: str, since: str | None, wait: float) -> dict[str, Any]:
        """One long poll: the next change after `since`, or `changed: false` after `wait` seconds."""
        params = {"wait": wait, "since": since}
        path = f"/v1/jobs/{_segment(job_id)}/events"
        return dict(self.json("GET", path, params=params, timeout=wait + self.timeout))

    # Admin.

    def queues(self) -> dict[str, Any]:
        """`{"queues": [...]}`."""
        return dict(self.json("GET", "/v1/queues"))

    def queue(self, name: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/v1/queues/{_segment(name)}"))

    def queue_jobs(self, name: str, **params: Any) -> dict[str, Any]:
        return dict(self.json("GET", f"/v1/queues/{_segment(name)}/jobs", params=params))

    def queue_action(self, name: str, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return dict(self.json("POST", f"/v1/queues/{_segment(name)}/{action}", json=body))

    def create_key(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.json("POST", "/v1/keys", json=body))

    def keys(self) -> dict[str, Any]:
        """`{"keys": [...]}`."""
        return dict(self.json("GET", "/v1/keys"))

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return dict(self.json("DELETE", f"/v1/keys/{_segment(key_id)}"))

    # Schedules (the caller's own; admins: any owner's).

    def create_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.json("POST", "/v1/schedules", json=body))

    def schedules(self, owner: str | None = None) -> dict[str, Any]:
        """`{"schedules": [...]}`."""
        return dict(self.json("GET", "/v1/schedules", params={"owner": owner}))

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/v1/schedules/{_segment(schedule_id)}"))

    def change_schedule(self, schedule_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.json("PATCH", f"/v1/schedules/{_segment(schedule_id)}", json=body))

    def delete_schedule(self, schedule_id: str) -> None:
        self.request("DELETE", f"/v1/schedules/{_segment(schedule_id)}")


def _segment(value: str) -> str:
    """A path segment: ids and queue names never contain these, and a hostile one must not change the
    route (`..`, `/`), so refuse them here rather than send a different request."""
    if not value or value in (".", "..") or re.search(r"[/?#%\s\\]", value):
        raise UsageError(f"invalid id or name {value!r}")
    return value


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unknown"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "unsupported URL scheme"
    return type(exc).__name__


def _body(response: httpx.Response, url: str) -> Any:
    if response.status_code == 204 or not response.content:
        return {}
    try:
        return response.json()
    except ValueError as exc:
        raise UnreachableError(
            f"unexpected answer from {url}: HTTP {response.status_code}, not JSON (is this a jobq API?)"
        ) from exc


def _api_error(response: httpx.Response, url: str) -> CliError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return UnreachableError(
            f"unexpected answer from {url}: HTTP {response.status_code} without a jobq error body"
        )
    field = error.get("field")
    if code == "internal" and error.get("request_id"):
        message = f"{message} (request id {error['request_id']})"
    if response.status_code == 429 and response.headers.get("Retry-After"):
        message = f"{message} (retry after {response.headers['Retry-After']} s)"
    return ApiError(response.status_code, code, message, str(field) if field is not None else None)
