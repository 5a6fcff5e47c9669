"""Logging: one JSON object per line on stdout (or key=value text for a person).

Every line carries `timestamp`, `level`, `logger`, `message`, `event` and
`run_id`, plus the downward-API fields. Records marked `always` (the run
summary, configuration errors) pass whatever the configured level is.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LOGGER_NAME = "cleanup"
# Attributes our own code adds to records but that are not output fields.
_INTERNAL = ("always",)
_HEAD = ("timestamp", "level", "logger", "message", "event", "run_id")


def rfc3339(moment: datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: what Loki and Datadog parse without hints."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def display_path(path: str) -> str:
    """A path as valid UTF-8 text: undecodable bytes shown as \\xNN, never dropped."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _fields(record: logging.LogRecord, context: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "timestamp": rfc3339(datetime.fromtimestamp(record.created, UTC)),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
        "event": getattr(record, "event", "log"),
        **context,
    }
    skip = set(RESERVED_ATTRS) | set(_INTERNAL) | set(data)
    for key, value in record.__dict__.items():
        if key not in skip:
            data[key] = value
    if record.exc_info:
        data["exc_info"] = logging.Formatter().formatException(record.exc_info)
    return data


class _Json(JsonFormatter):
    def __init__(self, context: Mapping[str, str]) -> None:
        super().__init__(json_ensure_ascii=False)
        self.context = dict(context)

    def format(self, record: logging.LogRecord) -> str:
        return self.serialize_log_record(_fields(record, self.context))


class _Text(logging.Formatter):
    """For a person at a terminal: time, level, event, target, then key=value pairs."""

    def __init__(self, context: Mapping[str, str]) -> None:
        super().__init__()
        self.context = dict(context)

    def format(self, record: logging.LogRecord) -> str:
        data = _fields(record, self.context)
        head = f"{data['timestamp']} {data['level']:<7} {data['event']}"
        rest = " ".join(
            f"{key}={value!r}" if isinstance(value, str) and " " in value else f"{key}={value}"
            for key, value in data.items()
            if key not in _HEAD
        )
        return f"{head} {data['message']!r} {rest}".rstrip()


class _Threshold(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or bool(getattr(record, "always", False))


class _Output(logging.StreamHandler[TextIO]):
    """Writes lines to stdout; a reader that has gone away ends the output quietly."""

    def handleError(self, record: logging.LogRecord) -> None:
        if not isinstance(sys.exc_info()[1], BrokenPipeError):
            super().handleError(record)
            return
        # `cleanup ... | head`: the reader has gone and nobody is left to tell. The run
        # goes on; what it would print, and the flush at exit, go to /dev/null instead
        # of a traceback per line.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


def configure(
    level: str,
    fmt: str,
    context: Mapping[str, str],
    stream: TextIO | None = None,
) -> logging.Logger:
    """Point the `cleanup` logger at stdout; safe to call again (tests run main() repeatedly)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _Output(stream or sys.stdout)
    handler.setFormatter(_Json(context) if fmt == "json" else _Text(context))
    threshold = logging.getLevelName(level)
    handler.addFilter(_Threshold(threshold))
    logger.addHandler(handler)
    # The logger itself stays at INFO or lower so `always` records reach the filter;
    # DEBUG only when asked, so per-item events cost nothing otherwise.
    logger.setLevel(min(threshold, logging.INFO))
    logger.propagate = False
    return logger


def emit(
    logger: logging.Logger,
    level: int,
    event: str,
    message: str,
    *,
    always: bool = False,
    **fields: Any,
) -> None:
    """Log one event; `message` is a constant sentence, data goes in fields."""
    if always or logger.isEnabledFor(level):
        logger.log(level, message, extra={"event": event, "always": always, **fields})
