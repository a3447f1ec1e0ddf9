"""Structured logs: one JSON object per line on stderr, each with the request id.

What never goes into a log: request or response bodies, headers (API keys, member tokens),
query strings, raw paths (they hold member ids: routes are logged as templates), client
addresses, webhook URLs and secrets. Exception texts are scrubbed of the statement
parameters and row values that database errors quote.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

# The id of the request being handled, set by the observability middleware.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_REDACTIONS = (
    # SQLAlchemy quotes a failed statement's parameters; PostgreSQL quotes row values.
    (re.compile(r"\[parameters: .*?\](?=\n|$)", re.DOTALL), "[parameters: redacted]"),
    (re.compile(r"(DETAIL:\s*)[^\n]*"), r"\1redacted"),
    (re.compile(r"(Key \([^)]*\)=)\([^\n]*?\)"), r"\1(redacted)"),
    # Secrets that have a recognisable shape: API keys, webhook secrets, bearer tokens.
    (re.compile(r"\b(ptr|whsec)_[A-Za-z0-9_\-]+"), r"\1_[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-.~+/=]+"), r"\1[redacted]"),
)


# Substrings without which no pattern above can match: most messages skip the regexes.
_TRIGGERS = ("[parameters:", "DETAIL:", "Key (", "ptr_", "whsec_", "earer", "EARER")


def redact(message: str) -> str:
    if not any(trigger in message for trigger in _TRIGGERS):
        return message
    for pattern, replacement in _REDACTIONS:
        message = pattern.sub(replacement, message)
    return message


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id"?, ...fields, "exception"?}``.

    Structured fields travel as ``extra={"fields": {...}}``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def configure_logging(level: str) -> None:
    """JSON lines on stderr for the service and uvicorn. Safe to call more than once."""
    root = logging.getLogger()
    if not any(isinstance(handler, StderrHandler) for handler in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn installs plain-text handlers of its own; route its records through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # httpx logs every request's full URL at info level: webhook URLs can carry tokens.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
