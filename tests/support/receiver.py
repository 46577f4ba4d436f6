"""A real HTTP server on 127.0.0.1 for outbound-job tests: records requests, answers from a script."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.settings import get_settings


class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers from a script of responses."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append((self.command, self.path, dict(self.headers), body))
                status, headers, content = receiver.answers.pop(0) if receiver.answers else (200, {}, b"ok")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815 (http.server's names)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def callback_receiver(monkeypatch: pytest.MonkeyPatch, secret: str) -> Iterator[Receiver]:
    """A Receiver for signed callbacks: webhooks signed with `secret`, and loopback URLs allowed (the
    settings are read afresh on entry and on exit)."""
    monkeypatch.setenv("JOBQ_WEBHOOK_SECRET", secret)
    monkeypatch.setenv("JOBQ_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()
    try:
        with Receiver() as server:
            yield server
    finally:
        get_settings.cache_clear()
