"""Logging: one JSON object per line on stdout (or one readable line for a person).

Every line carries `timestamp`, `level`, `logger`, `message`, `event` and
`run_id`, plus the downward-API fields. Records marked `always` (the run
summary, configuration errors) pass whatever the configured level is. Every
string is redacted on the way out, and records of other libraries (botocore,
psycopg, Python warnings) become lines of the same stream, never stderr text.
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

from cleanup.redact import redact, redact_value
from cleanup.units import human_bytes, human_seconds

LOGGER_NAME = "cleanup"
# Attributes our own code adds to records but that are not output fields.
_INTERNAL = ("always",)
_HEAD = ("timestamp", "level", "logger", "message", "event", "run_id")
_COUNTERS = ("scanned", "matched", "deleted", "failed", "bytes_freed")
# Summary events whose message already says what their counters say.
_SUMMARIES = ("target_finished", "run_finished")
_IN_SUMMARY = ("status", "dry_run", "duration_s", "exit_code", "backlog", "cutoff")


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
        "message": redact(record.getMessage()),
        "event": getattr(record, "event", "log"),
        **context,
    }
    skip = set(RESERVED_ATTRS) | set(_INTERNAL) | set(data)
    for key, value in record.__dict__.items():
        if key not in skip:
            data[key] = redact_value(value)
    if record.exc_info:
        data["traceback"] = redact(logging.Formatter().formatException(record.exc_info))
    return data


class _Json(JsonFormatter):
    def __init__(self, context: Mapping[str, str]) -> None:
        super().__init__(json_ensure_ascii=False)
        self.context = dict(context)

    def format(self, record: logging.LogRecord) -> str:
        return self.serialize_log_record(_fields(record, self.context))


def _human(key: str, value: Any) -> str:
    """One field value as a person reads it: no quotes, brackets or Python reprs."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "bytes_freed" or key.endswith("_bytes") or key == "size":
        return human_bytes(value) if isinstance(value, int | float) else str(value)
    if (key == "duration_s" or key.endswith("_s")) and isinstance(value, int | float):
        return human_seconds(float(value))
    if isinstance(value, list | tuple):
        return ", ".join(_human(key, v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_human(k, v)}" for k, v in value.items())
    return str(value)


def _table(targets: list[dict[str, Any]]) -> list[str]:
    """The summary table of the targets, printed after the run's last line."""
    header = [
        "TARGET",
        "KIND",
        "STATUS",
        "SCANNED",
        "MATCHED",
        "DELETED",
        "FAILED",
        "FREED",
        "TIME",
    ]
    rows = [
        [
            str(t.get("target", "")),
            str(t.get("kind", "")),
            str(t.get("status", "")),
            *(str(t.get(name, 0)) for name in _COUNTERS[:4]),
            human_bytes(t.get("bytes_freed", 0)),
            human_seconds(float(t.get("duration_s", 0.0))),
        ]
        for t in targets
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


class _Text(logging.Formatter):
    """For a person at a terminal: time, level, target, the message, then the other fields."""

    def __init__(self, context: Mapping[str, str]) -> None:
        super().__init__()
        self.context = dict(context)

    def format(self, record: logging.LogRecord) -> str:
        data = _fields(record, self.context)
        event = data["event"]
        clock = data["timestamp"][11:19]
        head = f"{clock} {data['level']:<7} {data['message']}"
        shown = {
            key: value
            for key, value in data.items()
            if key not in _HEAD
            and key not in ("traceback", "targets", "target", "kind", *self.context)
            and not (event in _SUMMARIES and key in (*_COUNTERS, *_IN_SUMMARY))
            and not (event == "config_error" and key == "errors")
        }
        # Summaries name their target in the message already.
        if "target" in data and event not in ("target_finished", "preflight"):
            head = f"{clock} {data['level']:<7} [{data['target']}] {data['message']}"
        rest = " ".join(f"{key}={_human(key, value)}" for key, value in shown.items())
        lines = [f"{head}  {rest}" if rest else head]
        if "traceback" in data:
            lines += ["    " + line for line in str(data["traceback"]).rstrip().splitlines()]
        if event == "run_finished" and data.get("targets"):
            lines += ["", *_table(data["targets"])]
        return "\n".join(lines)


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
    formatter = _Json(context) if fmt == "json" else _Text(context)
    threshold = logging.getLevelName(level)
    handler = _Output(stream or sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(_Threshold(threshold))
    for owner in (logger, logging.getLogger()):
        for old in list(owner.handlers):
            if isinstance(old, _Output):
                owner.removeHandler(old)
    logger.addHandler(handler)
    # The logger itself stays at INFO or lower so `always` records reach the filter;
    # DEBUG only when asked, so per-item events cost nothing otherwise.
    logger.setLevel(min(threshold, logging.INFO))
    logger.propagate = False
    # Other libraries' warnings (and Python's `warnings`) into the same stream, so
    # nothing reaches stderr through logging's last-resort handler.
    foreign = _Output(stream or sys.stdout)
    foreign.setFormatter(formatter)
    foreign.setLevel(max(threshold, logging.WARNING))
    root = logging.getLogger()
    root.addHandler(foreign)
    logging.captureWarnings(True)
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
    """Log one event; `message` is a sentence, data goes in fields."""
    if always or logger.isEnabledFor(level):
        logger.log(level, message, extra={"event": event, "always": always, **fields})
