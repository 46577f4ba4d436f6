"""The blocking client: `Client(url, key)`, one method per API operation (see docs/client.md)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import httpx

from jobq.client import calls, models
from jobq.client.calls import Call

T = TypeVar("T")
# Named before the class, whose `list` method would otherwise shadow the builtin in its annotations.
BatchItems = list[models.JobBatchItem]
Queues = list[models.QueuePublic]
Keys = list[models.KeyPublic]


class Client:
    """A client of the jobq HTTP API. `url` and `key` default to JOBQ_API_URL and JOBQ_API_KEY.

    It sends back the `Jobq-Sync-Token` of the last answer, so a read after a write sees that write even
    when another API instance or a read replica serves it. `transport` is httpx's (tests pass one)."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = calls.DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, headers = calls.settings(url, key)
        self.timeout = timeout
        self.sync_token: str | None = None
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: Call[T]) -> T:
        try:
            response = self._http.send(call.request(self._http, self.sync_token))
        except httpx.HTTPError as exc:
            raise calls.transport_error(exc, self.url) from exc
        self.sync_token = calls.next_token(response, self.sync_token)
        return call.parse(response)

    # Jobs: the caller's own.

    def submit(self, type: str, payload: Any = None, **options: Any) -> models.Submitted:
        """Submit one job; options as `calls.submit_body` (priority, delay, run_at, max_attempts, backoff,
        timeout, idempotency_key, metadata, tags, callback_url)."""
        return self._run(calls.submit(calls.submit_body(type, payload, **options)))

    def submit_many(self, jobs: Iterable[dict[str, Any]]) -> BatchItems:
        """Submit up to the API's batch limit in one call, all or none; each item is a submit body
        (`calls.submit_body(...)` builds one)."""
        return self._run(calls.submit_many(list(jobs)))

    def submit_flow(self, flow: dict[str, Any]) -> models.FlowPublic:
        """Submit a job and its `children` (a submit body with children, docs/workflows.md), all or none;
        the tree back, with every job's state."""
        return self._run(calls.submit_flow(flow))

    def get_flow(self, job_id: str) -> models.FlowPublic:
        """A job and its flow children as a tree."""
        return self._run(calls.get_flow(job_id))

    def get(self, job_id: str) -> models.Job:
        return self._run(calls.get(job_id))

    def list(
        self,
        *,
        state: str | None = None,
        type: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> models.JobPage:
        """A page of the caller's jobs, newest first; pass `page.cursor` back for the next."""
        return self._run(calls.list_jobs(state=state, type=type, tag=tag, limit=limit, cursor=cursor))

    def cancel(self, job_id: str) -> models.Job:
        return self._run(calls.cancel(job_id))

    def retry(self, job_id: str) -> models.Job:
        return self._run(calls.retry(job_id))

    def poll(self, job_id: str, *, since: str | None = None, wait: float = 20.0) -> models.JobChange:
        """One long poll: the job's next change after the event id `since`, or `changed: false` after
        `wait` seconds (at most 25)."""
        return self._run(calls.change(job_id, since, wait, self.timeout))

    def wait(self, job_id: str, *, timeout: float | None = 60.0) -> models.Job:
        """The job once it is completed, failed or cancelled (long polls: each answers as soon as the job
        changes). WaitTimeoutError after `timeout` seconds (None: no deadline)."""
        waiting = calls.Waiting(job_id, timeout, time.monotonic())
        while (wait := waiting.next_wait(time.monotonic())) is not None:
            if waiting.seen(self.poll(job_id, since=waiting.since, wait=wait)):
                return self.get(job_id)
        raise waiting.timed_out(timeout)

    def stream(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[models.JobEvent]:
        """The job's server-sent events (`status`, `log`) until it is terminal, reconnecting with the last
        event id when the server ends a stream early."""
        while True:
            request = self._http.build_request(
                "GET", calls.events_path(job_id), headers=_stream_headers(last_event_id)
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise calls.transport_error(exc, self.url) from exc
            try:
                if response.status_code == 204:
                    return
                if not response.is_success:
                    response.read()
                    raise calls.error_of(response)
                parser = models.SseParser()
                for line in response.iter_lines():
                    event = parser.feed(line)
                    if event is None:
                        continue
                    yield event
                    if event.terminal or event.event == "error":
                        return
                last_event_id = parser.last_id or last_event_id
            except httpx.HTTPError as exc:
                raise calls.transport_error(exc, self.url) from exc
            finally:
                response.close()

    def create_token(
        self, *, scopes: Iterable[str] = ("read",), tag: str | None = None, ttl: int = 900
    ) -> models.TokenCreated:
        """A short-lived browser token for the caller's own jobs (at most an hour): what a backend hands
        its user's page for the event stream and the jobs panel (docs/panel.md). `scopes`: read (always),
        submit, cancel; `tag` narrows it to the jobs carrying that tag."""
        body = {"scopes": list(scopes), "tag": tag, "ttl_seconds": ttl}
        return self._run(calls.create_token(body))

    # Schedules (the caller's own; admins: any owner's).

    def create_schedule(self, body: dict[str, Any]) -> models.SchedulePublic:
        return self._run(calls.create_schedule(body))

    def schedules(self, owner: str | None = None) -> models.ScheduleList:
        return self._run(calls.schedules(owner))

    def schedule(self, schedule_id: str) -> models.SchedulePublic:
        return self._run(calls.schedule(schedule_id))

    def change_schedule(self, schedule_id: str, body: dict[str, Any]) -> models.SchedulePublic:
        return self._run(calls.change_schedule(schedule_id, body))

    def delete_schedule(self, schedule_id: str) -> None:
        self._run(calls.delete_schedule(schedule_id))

    # Admin.

    def queues(self) -> Queues:
        return self._run(calls.queues())

    def queue(self, name: str) -> models.QueuePublic:
        return self._run(calls.queue(name))

    def queue_jobs(self, name: str, **params: Any) -> models.JobPage:
        return self._run(calls.queue_jobs(name, **params))

    def queue_action(self, name: str, action: str, body: dict[str, Any] | None = None) -> models.QueueAction:
        """`pause`, `resume`, `clean` or `retry-failed`."""
        return self._run(calls.queue_action(name, action, body))

    def create_key(self, owner: str, *, admin: bool = False, rate: str | None = None) -> models.KeyCreated:
        body: dict[str, Any] = {"owner": owner, "admin": admin}
        if rate is not None:
            body["rate"] = rate
        return self._run(calls.create_key(body))

    def list_keys(self) -> Keys:
        return self._run(calls.keys())

    def revoke_key(self, key_id: str) -> models.KeyPublic:
        return self._run(calls.revoke_key(key_id))


def _stream_headers(last_event_id: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    return headers
