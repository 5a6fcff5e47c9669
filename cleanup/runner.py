"""Runs the selected targets one after another and reports the run.

A failing target never stops the others. A stop request (SIGTERM/SIGINT, set by
the CLI) lets the running target finish what is in flight; it is reported
`interrupted` and the targets after it `skipped`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cleanup import __version__
from cleanup.config import Settings, TargetSettings
from cleanup.errors import TargetError, TargetSkipped
from cleanup.logs import emit, rfc3339
from cleanup.targets import build
from cleanup.targets.base import COUNTERS, Budget, Target, TargetContext

ZEROS: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
EXIT_OK = 0
EXIT_FAILED = 1
BAD_STATUSES = frozenset({"failed", "partial", "capped"})

Builder = Callable[[TargetSettings], Target]


@dataclass(frozen=True)
class TargetResult:
    target: str
    kind: str
    status: str
    counters: dict[str, int]
    duration_s: float

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "status": self.status,
            **self.counters,
            "duration_s": self.duration_s,
        }


def _status(ctx: TargetContext, stopped_during: bool) -> str:
    if stopped_during:
        return "interrupted"
    if ctx.budget.reached:
        return "capped"
    if ctx.counters.failed:
        return "partial"
    return "ok"


def _report_progress(ctx: TargetContext, interval: float, done: threading.Event) -> None:
    while not done.wait(interval):
        ctx.event(logging.INFO, "progress", "target in progress", **ctx.counters.as_dict())


def run_target(
    settings: TargetSettings,
    run: Settings,
    started_at: datetime,
    stop: threading.Event,
    logger: logging.Logger,
    builder: Builder = build,
) -> TargetResult:
    """Run one target to completion and log its `target_started` / `target_finished`."""
    cutoff = started_at - timedelta(seconds=settings.max_age)
    ctx = TargetContext(
        name=settings.name,
        kind=settings.kind,
        cutoff=cutoff,
        dry_run=run.dry_run,
        budget=Budget(run.max_deletions),
        stop=stop,
        logger=logger,
    )
    ctx.event(logging.INFO, "target_started", "target started", cutoff=rfc3339(cutoff))
    began = time.monotonic()
    done = threading.Event()
    progress = threading.Thread(
        target=_report_progress, args=(ctx, run.progress_interval, done), daemon=True
    )
    progress.start()
    extra: dict[str, Any] = {}
    try:
        builder(settings).run(ctx)
        status = _status(ctx, stop.is_set())
    except TargetSkipped as exc:
        status, extra["reason"] = "skipped", str(exc)
    except TargetError as exc:
        status, extra["error"] = "failed", str(exc)
    except Exception as exc:  # a bug in one target must not cost the other targets their run
        logger.debug("unexpected target error", exc_info=True)
        status, extra["error"] = "failed", f"unexpected error: {type(exc).__name__}: {exc}"
    finally:
        done.set()
        progress.join()
    duration = round(time.monotonic() - began, 3)
    result = TargetResult(settings.name, settings.kind, status, ctx.counters.as_dict(), duration)
    ctx.event(
        logging.ERROR if status == "failed" else logging.INFO,
        "target_finished",
        "target finished",
        status=status,
        **result.counters,
        duration_s=duration,
        dry_run=run.dry_run,
        **extra,
    )
    return result


def run(
    settings: Settings,
    started_at: datetime,
    stop: threading.Event,
    logger: logging.Logger,
    builder: Builder = build,
) -> tuple[str, list[TargetResult]]:
    """Run every selected target; returns the run status and each target's result."""
    selected = settings.selected
    emit(
        logger,
        logging.INFO,
        "run_started",
        "run started",
        dry_run=settings.dry_run,
        targets=[t.name for t in selected],
        version=__version__,
    )
    results: list[TargetResult] = []
    for target in selected:
        if stop.is_set():
            emit(
                logger,
                logging.INFO,
                "target_finished",
                "target finished",
                target=target.name,
                kind=target.kind,
                status="skipped",
                **ZEROS,
                duration_s=0.0,
                dry_run=settings.dry_run,
                reason="run interrupted before this target started",
            )
            results.append(
                TargetResult(target.name, target.kind, "skipped", dict.fromkeys(COUNTERS, 0), 0.0)
            )
            continue
        results.append(run_target(target, settings, started_at, stop, logger, builder))
    if stop.is_set():
        return "interrupted", results
    failed = any(r.status in BAD_STATUSES for r in results)
    return ("failed" if failed else "ok"), results


def finish(
    logger: logging.Logger,
    status: str,
    exit_code: int,
    results: list[TargetResult],
    duration_s: float,
    dry_run: bool,
) -> None:
    """Log `run_finished`: always printed, always last."""
    totals: dict[str, Any] = {name: sum(r.counters[name] for r in results) for name in COUNTERS}
    emit(
        logger,
        logging.ERROR if exit_code else logging.INFO,
        "run_finished",
        "run finished",
        always=True,
        status=status,
        exit_code=exit_code,
        duration_s=round(duration_s, 3),
        dry_run=dry_run,
        **totals,
        targets=[r.summary() for r in results],
    )
