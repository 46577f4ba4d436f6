"""The requests the clients send, without I/O: each method of Client and AsyncClient builds a `Call` here
and reads its answer with `Call.parse`, so both clients share every rule (paths, bodies, errors, the sync
token) and differ only in how they send.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx

from jobq.client import models
from jobq.client.errors import InvalidArgumentError, TransportError, WaitTimeoutError, api_error

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
SYNC_HEADER = "Jobq-Sync-Token"
LONG_POLL_MAX = 20.0  # seconds per long poll: the API allows 25, below API Gateway's 30 s limit
# A bearer credential is token68-like; anything else would be refused by the HTTP layer with a message
# quoting the header, so refuse it here without echoing it.
_KEY = re.compile(r"^[\x21-\x7e]{1,4096}$")
_TOKEN = re.compile(r"^[\x21-\x7e]{1,256}$")


def settings(url: str | None, key: str | None) -> tuple[str, dict[str, str]]:
    """The base URL and headers from the arguments or JOBQ_API_URL / JOBQ_API_KEY."""
    url = url or os.environ.get("JOBQ_API_URL") or DEFAULT_URL
    key = key if key is not None else os.environ.get("JOBQ_API_KEY")
    if not re.match(r"^https?://[^\s/]+", url):
        raise InvalidArgumentError(f"the API URL must be an http(s) URL, got {url!r}")
    headers = {"Accept": "application/json", "User-Agent": "jobq-python"}
    if key:
        if not _KEY.match(key):
            raise InvalidArgumentError("the API key contains spaces or invalid characters")
        headers["Authorization"] = f"Bearer {key}"
    return url.rstrip("/"), headers


def segment(value: str) -> str:
    """A path segment: ids and queue names never contain these, and a hostile one must not change the
    route (`..`, `/`), so refuse it rather than send a different request."""
    if not value or value in (".", "..") or re.search(r"[/?#%\s\\]", value):
        raise InvalidArgumentError(f"invalid id or name {value!r}")
    return value


@dataclass
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response, Any], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None  # None: the client's

    def request(self, client: httpx.Client | httpx.AsyncClient, sync_token: str | None) -> httpx.Request:
        headers = {SYNC_HEADER: sync_token} if sync_token else {}
        query = {name: value for name, value in self.params.items() if value is not None}
        extensions = {} if self.timeout is None else {"timeout": httpx.Timeout(self.timeout).as_dict()}
        return client.build_request(
            self.method, self.path, json=self.json, params=query, headers=headers, extensions=extensions
        )

    def parse(self, response: httpx.Response) -> T:
        """The answer as `T`; the error's typed exception otherwise."""
        if not response.is_success:
            raise error_of(response)
        return self.read(response, body_of(response))


def next_token(response: httpx.Response, held: str | None) -> str | None:
    """The sync token to send next: the answer's, when it carries a well-formed one."""
    token = response.headers.get(SYNC_HEADER)
    return token if token and _TOKEN.match(token) else held


def transport_error(exc: httpx.HTTPError, url: str) -> TransportError:
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(f"jobq API at {url} did not answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return TransportError(f"cannot reach jobq API at {url}: connection refused or host unknown")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return TransportError(f"cannot reach jobq API at {url}: unsupported URL scheme")
    return TransportError(f"cannot reach jobq API at {url}: {type(exc).__name__}")


def body_of(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return {}
    try:
        return response.json()
    except ValueError as exc:
        raise TransportError(
            f"unexpected answer: HTTP {response.status_code}, not JSON (is this a jobq API?)",
            status=response.status_code,
        ) from exc


def error_of(response: httpx.Response) -> Exception:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return TransportError(
            f"unexpected answer: HTTP {response.status_code} without a jobq error body",
            status=response.status_code,
        )
    field_name = error.get("field")
    if code == "internal" and error.get("request_id"):
        message = f"{message} (request id {error['request_id']})"
    retry_after: float | None = None
    with contextlib.suppress(KeyError, ValueError):
        retry_after = float(response.headers["Retry-After"])
    return api_error(
        response.status_code, code, message, None if field_name is None else str(field_name), retry_after
    )


def _model(kind: Callable[[Any], T]) -> Callable[[httpx.Response, Any], T]:
    return lambda _response, body: kind(body)


# -- the calls ------------------------------------------------------------------------------------------


def submit_body(
    type: str,
    payload: Any,
    *,
    priority: int | str | None = None,
    delay: float | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    backoff: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    idempotency_key: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    callback_url: str | None = None,
    depends_on: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A submit's JSON body: options left out take the job type's defaults on the server."""
    body: dict[str, Any] = {"type": type, "payload": payload}
    optional: dict[str, Any] = {
        "priority": priority,
        "delay_seconds": delay,
        "run_at": None if run_at is None else run_at.isoformat(),
        "max_attempts": max_attempts,
        "backoff": None if backoff is None else dict(backoff),
        "timeout_seconds": timeout,
        "idempotency_key": idempotency_key,
        "metadata": None if metadata is None else dict(metadata),
        "tags": None if tags is None else list(tags),
        "callback_url": callback_url,
        "depends_on": None if depends_on is None else list(depends_on),
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def _submitted(response: httpx.Response, body: Any) -> models.Submitted:
    return models.Submitted.model_validate({**body, "created": response.status_code == 201})


def submit(body: dict[str, Any]) -> Call[models.Submitted]:
    return Call("POST", "/v1/jobs", _submitted, json=body)


def submit_many(bodies: list[dict[str, Any]]) -> Call[list[models.JobBatchItem]]:
    return Call(
        "POST",
        "/v1/jobs/batch",
        lambda _response, body: models.JobBatchResult.model_validate(body).results,
        json={"jobs": bodies},
    )


def submit_flow(body: dict[str, Any]) -> Call[models.FlowPublic]:
    return Call("POST", "/v1/flows", _model(models.FlowPublic.model_validate), json=body)


def get_flow(job_id: str) -> Call[models.FlowPublic]:
    return Call("GET", f"/v1/flows/{segment(job_id)}", _model(models.FlowPublic.model_validate))


def get(job_id: str) -> Call[models.Job]:
    return Call("GET", f"/v1/jobs/{segment(job_id)}", _model(models.Job.model_validate))


def list_jobs(**params: Any) -> Call[models.JobPage]:
    return Call("GET", "/v1/jobs", _model(models.JobPage.model_validate), params=params)


def cancel(job_id: str) -> Call[models.Job]:
    return Call("DELETE", f"/v1/jobs/{segment(job_id)}", _model(models.Job.model_validate))


def retry(job_id: str) -> Call[models.Job]:
    return Call("POST", f"/v1/jobs/{segment(job_id)}/retry", _model(models.Job.model_validate))


def change(job_id: str, since: str | None, wait: float, timeout: float) -> Call[models.JobChange]:
    """One long poll: the next change after `since`, or `changed: false` after `wait` seconds."""
    return Call(
        "GET",
        f"/v1/jobs/{segment(job_id)}/events",
        _model(models.JobChange.model_validate),
        params={"wait": round(wait, 3), "since": since},
        timeout=wait + timeout,
    )


def events_path(job_id: str) -> str:
    return f"/v1/jobs/{segment(job_id)}/events"


def create_token(body: dict[str, Any]) -> Call[models.TokenCreated]:
    return Call("POST", "/v1/tokens", _model(models.TokenCreated.model_validate), json=body)


def create_schedule(body: dict[str, Any]) -> Call[models.SchedulePublic]:
    return Call("POST", "/v1/schedules", _model(models.SchedulePublic.model_validate), json=body)


def schedules(owner: str | None = None) -> Call[models.ScheduleList]:
    params = {"owner": owner}
    return Call("GET", "/v1/schedules", _model(models.ScheduleList.model_validate), params=params)


def schedule(schedule_id: str) -> Call[models.SchedulePublic]:
    return Call("GET", f"/v1/schedules/{segment(schedule_id)}", _model(models.SchedulePublic.model_validate))


def change_schedule(schedule_id: str, body: dict[str, Any]) -> Call[models.SchedulePublic]:
    path = f"/v1/schedules/{segment(schedule_id)}"
    return Call("PATCH", path, _model(models.SchedulePublic.model_validate), json=body)


def delete_schedule(schedule_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/schedules/{segment(schedule_id)}", lambda _r, _b: None)


def queues() -> Call[list[models.QueuePublic]]:
    return Call("GET", "/v1/queues", lambda _r, body: models.QueueList.model_validate(body).queues)


def queue(name: str) -> Call[models.QueuePublic]:
    return Call("GET", f"/v1/queues/{segment(name)}", _model(models.QueuePublic.model_validate))


def queue_jobs(name: str, **params: Any) -> Call[models.JobPage]:
    path = f"/v1/queues/{segment(name)}/jobs"
    return Call("GET", path, _model(models.JobPage.model_validate), params=params)


def queue_action(name: str, action: str, body: dict[str, Any] | None = None) -> Call[models.QueueAction]:
    path = f"/v1/queues/{segment(name)}/{segment(action)}"
    return Call("POST", path, _model(models.QueueAction.model_validate), json=body)


def create_key(body: dict[str, Any]) -> Call[models.KeyCreated]:
    return Call("POST", "/v1/keys", _model(models.KeyCreated.model_validate), json=body)


def keys() -> Call[list[models.KeyPublic]]:
    return Call("GET", "/v1/keys", lambda _r, body: models.KeyList.model_validate(body).keys)


def revoke_key(key_id: str) -> Call[models.KeyPublic]:
    return Call("DELETE", f"/v1/keys/{segment(key_id)}", _model(models.KeyPublic.model_validate))


class Waiting:
    """The bookkeeping of `wait()`: how long the next long poll may take, and the deadline."""

    def __init__(self, job_id: str, timeout: float | None, now: float) -> None:
        self.job_id = job_id
        self.deadline = None if timeout is None else now + timeout
        self.since: str | None = None
        self.state = "unknown"

    def next_wait(self, now: float) -> float | None:
        """Seconds for the next poll; None once the deadline has passed."""
        if self.deadline is None:
            return LONG_POLL_MAX
        left = self.deadline - now
        return None if left <= 0 else min(LONG_POLL_MAX, left)

    def seen(self, answer: models.JobChange) -> bool:
        """Record an answer; True when the job is terminal."""
        self.since, self.state = answer.event_id, answer.status.state.value
        return answer.terminal

    def timed_out(self, timeout: float | None) -> WaitTimeoutError:
        return WaitTimeoutError(
            f"job {self.job_id} still {self.state} after {timeout:g} s", job_id=self.job_id, state=self.state
        )
