"""What every target gets from the runner, and the one method it must provide."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cleanup.logs import emit

COUNTERS = ("scanned", "matched", "deleted", "failed", "bytes_freed")


@dataclass
class Counters:
    """Per-target counters. Written by the target's own thread, read by the progress thread."""

    scanned: int = 0
    matched: int = 0
    deleted: int = 0
    failed: int = 0
    bytes_freed: int = 0
    # Eligible items a dry run counted past the cap (not in `matched`): with `matched`,
    # the `backlog` a capped preview reports.
    over_cap: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}


class Budget:
    """The `max_deletions` cap of one target, safe to share between concurrent batches.

    Deletions are granted before they happen and handed back when they fail, so the
    items actually removed never exceed the limit, whatever runs in parallel.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        """Grant up to `wanted` deletions; 0 means the cap is reached and the target must stop."""
        if self.limit == 0:
            return wanted
        with self._lock:
            granted = max(0, min(wanted, self.limit - self._used))
            self._used += granted
            return granted

    def give_back(self, count: int) -> None:
        """Return grants for deletions that did not happen (failed or skipped items)."""
        if self.limit == 0 or count <= 0:
            return
        with self._lock:
            self._used -= count

    @property
    def reached(self) -> bool:
        return self.limit > 0 and self._used >= self.limit


@dataclass
class TargetContext:
    """Everything one target run needs: its cutoff, mode, counters, cap, stop flag and logger."""

    name: str
    kind: str
    cutoff: datetime
    dry_run: bool
    budget: Budget
    stop: threading.Event
    logger: logging.Logger
    counters: Counters = field(default_factory=Counters)
    # How often a long target reports: also the most often a target repeats a warning.
    progress_interval: float = 60.0
    # Target-specific fields for `target_finished` (e.g. S3's `throttled`).
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def debug(self) -> bool:
        """Whether per-item events are wanted; hot loops check this once, not per item."""
        return self.logger.isEnabledFor(logging.DEBUG)

    def event(self, level: int, event: str, message: str, **fields: Any) -> None:
        emit(self.logger, level, event, message, target=self.name, kind=self.kind, **fields)

    def item_done(self, **item: Any) -> None:
        """One item deleted, or that would be deleted in a dry run (DEBUG)."""
        if self.dry_run:
            self.event(logging.DEBUG, "item_would_delete", "item would be deleted", **item)
        else:
            self.event(logging.DEBUG, "item_deleted", "item deleted", **item)

    def item_failed(self, error: str, *, predicted: bool = False, **item: Any) -> None:
        """One item whose removal failed; in a dry run, `predicted` marks one that would fail."""
        if predicted:
            item["predicted"] = True
        self.event(logging.WARNING, "item_failed", "item could not be deleted", error=error, **item)

    def warning(self, code: str, message: str, **fields: Any) -> None:
        """A `target_warning`: the target runs, but as configured it can never match anything."""
        self.event(logging.WARNING, "target_warning", message, code=code, **fields)

    def past_cap(self, count: int = 1) -> bool:
        """`count` eligible items the cap did not grant. True: keep scanning (a dry run
        counts them into `backlog`); False: stop, the cap holds."""
        if not self.dry_run:
            return False
        self.counters.over_cap += count
        return True

    def wait(self, seconds: float) -> bool:
        """Sleep that a stop request cuts short; True when the target must stop."""
        return self.stop.wait(seconds)


class Target(Protocol):
    """A store to sweep. `run` deletes what is older than `ctx.cutoff`.

    It updates `ctx.counters`, takes each deletion from `ctx.budget` (when it grants
    nothing, asks `ctx.past_cap`: a dry run goes on counting, a real run stops),
    checks `ctx.stop` between items and sleeps only through `ctx.wait`, never deletes
    when `ctx.dry_run` (it predicts with `ctx.item_failed(..., predicted=True)` the
    failures it can see without writing), puts target-specific summary fields in
    `ctx.summary`, and raises TargetError when the store cannot be used at all.

    `preflight` checks, changing nothing, that the store is reachable and that this
    identity may list and delete there; it returns the problems found (none: ready).
    """

    def run(self, ctx: TargetContext) -> None: ...

    def preflight(self, ctx: TargetContext) -> list[str]: ...
