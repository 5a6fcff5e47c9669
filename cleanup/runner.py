"""Runs the selected targets one after another and reports the run.

A failing target never stops the others. A stop request (SIGTERM/SIGINT, set by
the CLI) lets the running target finish what is in flight; it is reported
`interrupted` and the targets after it `skipped`. Every wait after the stop is
bounded: a target still busy STOP_GRACE_S after the request is left behind.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cleanup import __version__
from cleanup.config import Settings
from cleanup.errors import TargetError, TargetSkipped
from cleanup.logs import emit, rfc3339
from cleanup.targets import TargetSettings, build
from cleanup.targets.base import COUNTERS, Budget, Target, TargetContext
from cleanup.units import human_bytes, human_seconds

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CAPPED = 3
# How long a target may take to wind down after a stop request before it is left
# behind; with the summary and exit this keeps `run_finished` within 10 s of SIGTERM.
STOP_GRACE_S = 7.0
_POLL_S = 0.2

Builder = Callable[[TargetSettings], Target]


@dataclass(frozen=True)
class TargetResult:
    target: str
    kind: str
    status: str
    counters: dict[str, int]
    duration_s: float
    extra: dict[str, Any] = field(default_factory=dict)  # backlog, throttled, ...

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "status": self.status,
            **self.counters,
            "duration_s": self.duration_s,
            **{k: v for k, v in self.extra.items() if k in ("backlog", "throttled")},
        }


class _LeftBehind(Exception):
    """The target did not wind down within STOP_GRACE_S of the stop request."""


def _bounded(work: Callable[[], None], stop: threading.Event, name: str) -> None:
    """Run `work` in a thread of its own; wait for it, but after a stop at most STOP_GRACE_S.

    Its exceptions are raised here. The thread is a daemon: one left behind (blocked
    on a store that never answers) cannot keep the process from exiting.
    """
    raised: list[BaseException] = []

    def body() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the caller's thread
            raised.append(exc)

    thread = threading.Thread(target=body, name=f"target-{name}", daemon=True)
    thread.start()
    deadline: float | None = None
    while thread.is_alive():
        thread.join(_POLL_S)
        if stop.is_set() and thread.is_alive():
            deadline = deadline or time.monotonic() + STOP_GRACE_S
            if time.monotonic() >= deadline:
                raise _LeftBehind
    if raised:
        raise raised[0]


def _status(ctx: TargetContext, stopped_during: bool) -> str:
    if stopped_during:
        return "interrupted"
    if ctx.budget.reached:
        return "capped"
    if ctx.counters.failed:
        return "partial"
    return "ok"


def target_message(name: str, status: str, counters: dict[str, int], extra: dict[str, Any]) -> str:
    """The readable one-line summary of a target, e.g. `temp: ok, 1204 deleted, 3.1 MiB freed in 2.4 s`."""
    took = human_seconds(float(extra.get("duration_s", 0.0)))
    if status == "failed":
        return f"{name}: failed: {extra.get('error', 'unknown error')}"
    if status == "skipped":
        return f"{name}: skipped: {extra.get('reason', '')}".rstrip(": ")
    freed = human_bytes(counters.get("bytes_freed", 0))
    if extra.get("dry_run"):
        head = f"{name}: {status} (dry run), {counters.get('matched', 0)} would be deleted"
        tail = f"{freed} would be freed in {took}"
    else:
        head = f"{name}: {status}, {counters.get('deleted', 0)} deleted"
        tail = f"{freed} freed in {took}"
    parts = [head]
    if counters.get("failed"):
        parts.append(f"{counters['failed']} failed")
    if "backlog" in extra:
        parts.append(f"backlog {extra['backlog']}")
    return ", ".join([*parts, tail])


def _report_progress(ctx: TargetContext, interval: float, done: threading.Event) -> None:
    while not done.wait(interval):
        ctx.event(logging.INFO, "progress", "target in progress", **ctx.counters.as_dict())


def _context(
    settings: TargetSettings,
    run: Settings,
    started_at: datetime,
    stop: threading.Event,
    logger: logging.Logger,
) -> TargetContext:
    return TargetContext(
        name=settings.name,
        kind=settings.kind,
        cutoff=started_at - timedelta(seconds=settings.max_age),
        dry_run=run.dry_run,
        budget=Budget(run.max_deletions),
        stop=stop,
        logger=logger,
        progress_interval=run.progress_interval,
    )


def _unexpected(exc: BaseException) -> dict[str, Any]:
    return {
        "error": f"unexpected error: {type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


def run_target(
    settings: TargetSettings,
    run: Settings,
    started_at: datetime,
    stop: threading.Event,
    logger: logging.Logger,
    builder: Builder = build,
) -> TargetResult:
    """Run one target to completion and log its `target_started` / `target_finished`."""
    ctx = _context(settings, run, started_at, stop, logger)
    ctx.event(logging.INFO, "target_started", "target started", cutoff=rfc3339(ctx.cutoff))
    began = time.monotonic()
    done = threading.Event()
    progress = threading.Thread(
        target=_report_progress, args=(ctx, run.progress_interval, done), daemon=True
    )
    progress.start()
    extra: dict[str, Any] = {}
    try:
        _bounded(lambda: builder(settings).run(ctx), stop, settings.name)
        status = _status(ctx, stop.is_set())
    except _LeftBehind:
        status = "interrupted"
        extra["error"] = (
            f"still busy {STOP_GRACE_S:.0f} s after the stop request (a store that does not "
            "answer?): left behind; its counters are those reached by then"
        )
    except TargetSkipped as exc:
        status, extra["reason"] = "skipped", str(exc)
    except TargetError as exc:
        status, extra["error"] = "failed", str(exc)
    except Exception as exc:  # a bug in one target must not cost the other targets their run
        status = "failed"
        extra |= _unexpected(exc)
    finally:
        done.set()
        progress.join(1.0)
    duration = round(time.monotonic() - began, 3)
    counters = ctx.counters.as_dict()
    if status == "capped" and run.dry_run:
        extra["backlog"] = ctx.counters.matched + ctx.counters.over_cap
    extra |= ctx.summary
    fields = {
        "status": status,
        **counters,
        "duration_s": duration,
        "dry_run": run.dry_run,
        "cutoff": rfc3339(ctx.cutoff),
        "max_age_s": settings.max_age,
        **extra,
    }
    ctx.event(
        logging.ERROR if status == "failed" else logging.INFO,
        "target_finished",
        target_message(settings.name, status, counters, fields),
        **fields,
    )
    return TargetResult(settings.name, settings.kind, status, counters, duration, extra)


def _skipped(
    target: TargetSettings, settings: Settings, started_at: datetime, logger: logging.Logger
) -> TargetResult:
    reason = "run interrupted before this target started"
    zeros = dict.fromkeys(COUNTERS, 0)
    fields: dict[str, Any] = {
        "status": "skipped",
        **zeros,
        "duration_s": 0.0,
        "dry_run": settings.dry_run,
        "cutoff": rfc3339(started_at - timedelta(seconds=target.max_age)),
        "max_age_s": target.max_age,
        "reason": reason,
    }
    emit(
        logger,
        logging.INFO,
        "target_finished",
        target_message(target.name, "skipped", zeros, fields),
        target=target.name,
        kind=target.kind,
        **fields,
    )
    return TargetResult(target.name, target.kind, "skipped", zeros, 0.0, {"reason": reason})


def _started(settings: Settings, logger: logging.Logger, **fields: Any) -> None:
    emit(
        logger,
        logging.INFO,
        "run_started",
        "run started",
        dry_run=settings.dry_run,
        targets=[t.name for t in settings.selected],
        version=__version__,
        **fields,
    )


def exit_code(results: list[TargetResult]) -> int:
    """3 when a cap held (ahead of everything: a retry must not extend it), 1 on failures."""
    statuses = {r.status for r in results}
    if "capped" in statuses:
        return EXIT_CAPPED
    if statuses & {"failed", "partial"}:
        return EXIT_FAILED
    return EXIT_OK


def _each(
    settings: Settings,
    started_at: datetime,
    stop: threading.Event,
    logger: logging.Logger,
    one: Callable[[TargetSettings], TargetResult],
) -> list[TargetResult]:
    """`one` for every selected target, in order; those a stop request came before skipped."""
    results: list[TargetResult] = []
    for target in settings.selected:
        if stop.is_set():
            results.append(_skipped(target, settings, started_at, logger))
            continue
        results.append(one(target))
    return results


def run(
    settings: Settings,
    started_at: datetime,
    stop: threading.Event,
    logger: logging.Logger,
    builder: Builder = build,
) -> list[TargetResult]:
    """Run every selected target; returns each target's result."""
    _started(settings, logger)
    return _each(
        settings,
        started_at,
        stop,
        logger,
        lambda target: run_target(target, settings, started_at, stop, logger, builder),
    )


def _check_one(
    target: TargetSettings,
    settings: Settings,
    started_at: datetime,
    stop: threading.Event,
    logger: logging.Logger,
    builder: Builder,
) -> TargetResult:
    ctx = _context(target, settings, started_at, stop, logger)
    began = time.monotonic()
    problems: list[str] = []
    extra: dict[str, Any] = {}
    try:
        _bounded(lambda: problems.extend(builder(target).preflight(ctx)), stop, target.name)
    except _LeftBehind:
        problems.append(f"no answer within {STOP_GRACE_S:.0f} s of the stop request")
    except TargetError as exc:
        problems.append(str(exc))
    except Exception as exc:
        extra = _unexpected(exc)
        problems.append(extra["error"])
    ready = not problems
    message = f"{target.name}: " + ("ready" if ready else "not ready: " + "; ".join(problems))
    ctx.event(
        logging.INFO if ready else logging.WARNING,
        "preflight",
        message,
        ready=ready,
        problems=problems,
        **extra,
    )
    duration = round(time.monotonic() - began, 3)
    status = "ok" if ready else "failed"
    return TargetResult(target.name, target.kind, status, dict.fromkeys(COUNTERS, 0), duration)


def preflight(
    settings: Settings,
    started_at: datetime,
    stop: threading.Event,
    logger: logging.Logger,
    builder: Builder = build,
) -> list[TargetResult]:
    """Check every selected target, changing nothing; one `preflight` event per target.

    A ready target's result is `ok`, one that is not is `failed`, so the exit code
    and the summary follow the usual rules.
    """
    _started(settings, logger, preflight=True)
    return _each(
        settings,
        started_at,
        stop,
        logger,
        lambda target: _check_one(target, settings, started_at, stop, logger, builder),
    )


def run_message(
    status: str, code: int, results: list[TargetResult], duration_s: float, dry_run: bool
) -> str:
    """The readable one-line summary of a run."""
    if code == EXIT_USAGE:
        return "run failed (exit 2): invalid configuration, nothing deleted"
    totals = {name: sum(r.counters[name] for r in results) for name in COUNTERS}
    bad = [r.target for r in results if r.status in ("failed", "partial", "capped")]
    head = f"run {status}" if code == EXIT_OK else f"run {status} (exit {code})"
    if dry_run:
        done = f"{totals['matched']} would be deleted, {human_bytes(totals['bytes_freed'])} would be freed"
    else:
        done = f"{totals['deleted']} deleted, {human_bytes(totals['bytes_freed'])} freed"
    count = f"{len(results)} target" + ("" if len(results) == 1 else "s")
    parts = [f"{head}: {count}"]
    if bad:
        parts.append("not ok: " + ", ".join(bad))
    return "; ".join(parts) + f"; {done} in {human_seconds(duration_s)}"


def finish(
    logger: logging.Logger,
    status: str,
    code: int,
    results: list[TargetResult],
    duration_s: float,
    dry_run: bool,
    **fields: Any,
) -> None:
    """Log `run_finished`: always printed, always last."""
    totals: dict[str, Any] = {name: sum(r.counters[name] for r in results) for name in COUNTERS}
    emit(
        logger,
        logging.ERROR if code else logging.INFO,
        "run_finished",
        run_message(status, code, results, duration_s, dry_run),
        always=True,
        status=status,
        exit_code=code,
        duration_s=round(duration_s, 3),
        dry_run=dry_run,
        **totals,
        targets=[r.summary() for r in results],
        **fields,
    )
