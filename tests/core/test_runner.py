"""The runner: statuses, progress events and the cap, with small in-test targets."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest

from cleanup.config import Settings, VolumeSettings
from cleanup.errors import TargetError, TargetSkipped
from cleanup.logs import configure
from cleanup.runner import exit_code, run
from cleanup.targets.base import Budget, TargetContext
from tests.volumes.conftest import NOW


class Slow:
    """Counts an item every 50 ms for `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, ctx: TargetContext) -> None:
        end = time.monotonic() + self.seconds
        while time.monotonic() < end and not ctx.stop.is_set():
            ctx.counters.scanned += 1
            time.sleep(0.05)


class Raises:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def run(self, ctx: TargetContext) -> None:
        raise self.exc


def settings(*names: str, interval: int = 30, cap: int = 0) -> Settings:
    targets = tuple(VolumeSettings(name=n, path="/tmp", max_age=86400) for n in names)
    return Settings(targets=targets, progress_interval=interval, max_deletions=cap)


def run_with(targets: dict[str, Any], config: Settings) -> tuple[int, list[dict[str, Any]]]:
    stream = io.StringIO()
    logger = configure("INFO", "json", {"run_id": "r"}, stream=stream)
    results = run(config, NOW, threading.Event(), logger, builder=lambda s: targets[s.name])
    return exit_code(results), [json.loads(line) for line in stream.getvalue().splitlines()]


def test_runner_long_target_emits_progress_with_counters() -> None:
    """A target running longer than progress_interval logs `progress` with the five counters."""
    code, lines = run_with({"slow": Slow(2.5)}, settings("slow", interval=1))
    progress = [line for line in lines if line["event"] == "progress"]
    assert code == 0
    assert len(progress) >= 2
    assert progress[-1]["scanned"] > progress[0]["scanned"] > 0
    assert {"matched", "deleted", "failed", "bytes_freed"} <= progress[0].keys()
    assert progress[0]["target"] == "slow"


@pytest.mark.parametrize(
    ("exc", "status", "field"),
    [
        (TargetError("bucket 'x' unreachable"), "failed", "error"),
        (TargetSkipped("another run holds the lock"), "skipped", "reason"),
        (RuntimeError("bug"), "failed", "error"),
    ],
)
def test_runner_target_outcome_sets_status(exc: Exception, status: str, field: str) -> None:
    """Errors fail only their target, skips are not failures, and the next target still runs."""
    code, lines = run_with({"a": Raises(exc), "b": Slow(0)}, settings("a", "b"))
    finished = {line["target"]: line for line in lines if line["event"] == "target_finished"}
    assert finished["a"]["status"] == status
    assert finished["a"][field]
    assert finished["b"]["status"] == "ok"
    assert code == (1 if status == "failed" else 0)


def test_budget_concurrent_takes_never_exceed_limit() -> None:
    """Many threads taking from one budget are granted exactly the limit in total."""
    budget = Budget(1000)
    granted: list[int] = []

    def worker() -> None:
        for _ in range(500):
            granted.append(budget.take(3))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 1000
    assert budget.reached
    budget.give_back(10)
    assert budget.take(50) == 10
