"""Structured logs: one JSON object per line (production) or one readable line (`jobq dev`), secrets masked.

`configure_logging(settings)` owns one handler on the root logger, so library records (uvicorn, httpx) come
out in the same shape. Context travels as `extra=` fields (request_id, job_id, queue, attempt, duration_ms,
status, ...), which the JSON formatter writes as top-level keys.

Redaction is a filter on that handler rather than care at each call site, because a library or a future log
call may put a header, a token or a payload in a record: fields named like a secret or a payload are masked,
and every secret value of the settings, bearer tokens and API keys are masked inside any text.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic import SecretStr

from shared.settings import Settings

REDACTED = "[redacted]"
SENSITIVE_FIELD = re.compile(
    r"token|secret|authorization|password|passwd|payload|api_?key|cookie|credential|signature", re.I
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",;]+")
_API_KEY = re.compile(r"\bjq_[0-9a-f]{16}_[A-Za-z0-9_-]{20,64}")
MIN_SECRET_CHARS = 6  # shorter settings values would mask ordinary words
# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_QUIET = {"httpx": logging.WARNING, "httpcore": logging.WARNING}  # a line per Redis call is noise
ACCESS_LOGGER = "jobq.api.access"  # the API's line per request; 5xx answers are errors, logged always


def extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class Redactor(logging.Filter):
    """Masks secrets in a record before any handler formats it (the record is changed in place)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        return _API_KEY.sub(REDACTED, text)

    def clean(self, key: str, value: Any) -> Any:
        if SENSITIVE_FIELD.search(key):
            return REDACTED
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self.clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.clean("", v) for v in value]
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = self.scrub(record.getMessage()), None
        except Exception:  # a malformed call: leave it to the handler's error path, never raise here
            return True
        for key, value in extras(record).items():
            setattr(record, key, self.clean(key, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "event", ...extras} on one line (newlines inside are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **extras(record),
        }
        if record.exc_info or record.exc_text:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, default=str, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    """`12:00:01.123 INFO  jobq.api  request  method=GET path=/v1/jobs status=200` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        fields = " ".join(f"{k}={v}" for k, v in extras(record).items())
        line = f"{when} {record.levelname:<7} {record.name}  {record.getMessage()}  {fields}".rstrip()
        if record.exc_info or record.exc_text:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))  # type: ignore[arg-type]
        return line


class JobqHandler(logging.Handler):
    """Writes to the given stream, else to `sys.stderr` as it is at each record (tests swap it)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.target = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self.target or sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # a log line must never break a request or a job
            self.handleError(record)


def secret_values(settings: Settings) -> list[str]:
    """Every SecretStr the settings hold (admin, metrics, Redis, JWT, signing...), as plain text."""
    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [v.get_secret_value() for v in values if isinstance(v, SecretStr) and v.get_secret_value()]


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Install (or replace) jobq's handler on the root logger. Idempotent: never a second handler.

    On AWS Lambda the runtime already has a handler on the root logger (it adds the request id); adding
    ours would print every line twice, so there ours is used only when no other handler exists.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, JobqHandler)]:
        root.removeHandler(old)
    formatter = ConsoleFormatter() if settings.log_format == "console" else JsonFormatter()
    redactor = Redactor(secret_values(settings))
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and root.handlers and stream is None:
        for handler in root.handlers:
            for old_filter in [f for f in handler.filters if isinstance(f, Redactor)]:
                handler.removeFilter(old_filter)
            handler.addFilter(redactor)
            handler.setFormatter(formatter)
        target: logging.Handler = root.handlers[0]
    else:
        target = JobqHandler(stream)
        target.setFormatter(formatter)
        target.addFilter(redactor)
        root.addHandler(target)
    root.setLevel(settings.log_level.upper())
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.NOTSET if settings.access_log else logging.WARNING)
    return target
