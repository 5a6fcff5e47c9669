"""The runner: statuses, progress events and the cap, with small in-test targets."""

from __future__ import annotations

import io
import json
import logging
import threading
from typing import Any

import pytest

from cleanup import runner
from cleanup.config import Settings
from cleanup.errors import TargetError, TargetSkipped
from cleanup.logs import configure
from cleanup.runner import exit_code, run
from cleanup.targets.base import Budget, TargetContext
from cleanup.targets.volumes.settings import VolumeSettings
from tests.volumes.conftest import NOW


class Done:
    """Examines one item and finishes."""

    def run(self, ctx: TargetContext) -> None:
        ctx.counters.scanned += 1


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


class Paced:
    """Counts one item at a time, moving on only once a `progress` event has shown it."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.shown: list[int] = []
        self.changed = threading.Condition()

    def watch(self, record: logging.LogRecord) -> bool:
        if getattr(record, "event", None) == "progress":
            with self.changed:
                self.shown.append(getattr(record, "scanned", -1))
                self.changed.notify_all()
        return True

    def run(self, ctx: TargetContext) -> None:
        for step in range(1, self.steps + 1):
            ctx.counters.scanned = step
            with self.changed:
                if not self.changed.wait_for(lambda s=step: s in self.shown, timeout=30):
                    raise AssertionError(f"no progress event showed scanned={step}")


def test_runner_long_target_emits_progress_with_live_counters() -> None:
    """A target running longer than progress_interval logs `progress` with its current counters."""
    paced = Paced(3)
    logging.getLogger("cleanup").addFilter(paced.watch)
    try:
        code, lines = run_with({"slow": paced}, settings("slow", interval=1))
    finally:
        logging.getLogger("cleanup").removeFilter(paced.watch)
    progress = [line for line in lines if line["event"] == "progress"]
    assert code == 0
    assert [line["scanned"] for line in progress][:3] == [1, 2, 3]
    assert {"matched", "deleted", "failed", "bytes_freed"} <= progress[0].keys()
    assert progress[0]["target"] == "slow"


@pytest.mark.parametrize(
    ("exc", "status", "field", "message"),
    [
        (TargetError("bucket 'x' unreachable"), "failed", "error", "bucket 'x' unreachable"),
        (
            TargetSkipped("another run holds the lock"),
            "skipped",
            "reason",
            "another run holds the lock",
        ),
        (RuntimeError("bug"), "failed", "error", "unexpected error: RuntimeError: bug"),
    ],
)
def test_runner_target_outcome_sets_status(
    exc: Exception, status: str, field: str, message: str
) -> None:
    """Errors fail only their target, skips are not failures, and the next target still runs."""
    code, lines = run_with({"a": Raises(exc), "b": Done()}, settings("a", "b"))
    finished = {line["target"]: line for line in lines if line["event"] == "target_finished"}
    assert finished["a"]["status"] == status
    assert finished["a"][field] == message
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


class Capped:
    """Deletes items until the budget grants nothing; in a dry run counts the rest past the cap."""

    def __init__(self, eligible: int) -> None:
        self.eligible = eligible

    def run(self, ctx: TargetContext) -> None:
        for _ in range(self.eligible):
            if not ctx.budget.take(1):
                if ctx.past_cap():
                    continue
                return
            ctx.counters.matched += 1
            ctx.counters.deleted += 0 if ctx.dry_run else 1


def test_runner_capped_and_failed_targets_exit_3() -> None:
    """A cap holds ahead of everything: one capped and one failed target make exit 3."""
    code, lines = run_with(
        {"a": Capped(10), "b": Raises(TargetError("down"))}, settings("a", "b", cap=4)
    )
    assert code == 3
    finished = {
        line["target"]: line["status"] for line in lines if line["event"] == "target_finished"
    }
    assert finished == {"a": "capped", "b": "failed"}


def test_runner_capped_dry_run_reports_backlog() -> None:
    """A capped dry run keeps `matched` at the cap and reports every eligible item as `backlog`."""
    config = Settings(
        targets=(VolumeSettings(name="a", path="/tmp", max_age=86400),),
        dry_run=True,
        max_deletions=4,
    )
    code, lines = run_with({"a": Capped(10)}, config)
    (finished,) = [line for line in lines if line["event"] == "target_finished"]
    assert code == 3
    assert (finished["status"], finished["matched"], finished["backlog"]) == ("capped", 4, 10)


def test_runner_capped_real_run_has_no_backlog() -> None:
    """`backlog` belongs to the preview; a real capped run stops at the cap and says nothing more."""
    _, lines = run_with({"a": Capped(10)}, settings("a", cap=4))
    (finished,) = [line for line in lines if line["event"] == "target_finished"]
    assert (finished["deleted"], "backlog" in finished) == (4, False)


def test_runner_unexpected_error_logs_its_traceback() -> None:
    """A bug in a target is ERROR with the error and its traceback in `target_finished`."""
    _, lines = run_with({"a": Raises(RuntimeError("bug"))}, settings("a"))
    (finished,) = [line for line in lines if line["event"] == "target_finished"]
    assert finished["level"] == "ERROR"
    assert finished["error"] == "unexpected error: RuntimeError: bug"
    assert (
        finished["traceback"].startswith("Traceback") and "raise self.exc" in finished["traceback"]
    )


class Hangs:
    """Ignores the stop request: a store that never answers."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def run(self, ctx: TargetContext) -> None:
        self.entered.set()
        self.release.wait(60)


def test_runner_target_that_ignores_the_stop_is_left_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a stop request the runner waits STOP_GRACE_S at most; the target is `interrupted`."""
    monkeypatch.setattr(runner, "STOP_GRACE_S", 0.5)
    hung = Hangs()
    stop = threading.Event()
    stream = io.StringIO()
    logger = configure("INFO", "json", {"run_id": "r"}, stream=stream)
    config = settings("a", "b")
    done = threading.Event()

    def go() -> None:
        run(config, NOW, stop, logger, builder=lambda s: hung if s.name == "a" else Done())
        done.set()

    thread = threading.Thread(target=go)
    thread.start()
    assert hung.entered.wait(10)
    stop.set()
    assert done.wait(30), "the runner waited for a target that never stops"
    hung.release.set()
    thread.join()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    finished = {line["target"]: line for line in lines if line["event"] == "target_finished"}
    assert finished["a"]["status"] == "interrupted" and "left behind" in finished["a"]["error"]
    assert finished["b"]["status"] == "skipped"
    assert finished["b"]["cutoff"] == "2026-05-31T12:00:00.000Z", (
        "a skipped target keeps its cutoff"
    )


class Checks:
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def run(self, ctx: TargetContext) -> None:
        raise AssertionError("preflight must not run the target")

    def preflight(self, ctx: TargetContext) -> list[str]:
        return self.problems


def test_runner_preflight_one_event_per_target_and_changes_nothing() -> None:
    """--preflight asks each target, logs `ready`/`problems` per target, exit 1 when one is not ready."""
    stream = io.StringIO()
    logger = configure("INFO", "json", {"run_id": "r"}, stream=stream)
    targets = {"a": Checks([]), "b": Checks(["bucket 'x' does not exist"])}
    results = runner.preflight(
        settings("a", "b"), NOW, threading.Event(), logger, builder=lambda s: targets[s.name]
    )
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    checks = {line["target"]: line for line in lines if line["event"] == "preflight"}
    assert (checks["a"]["ready"], checks["a"]["problems"], checks["a"]["level"]) == (
        True,
        [],
        "INFO",
    )
    assert (checks["b"]["ready"], checks["b"]["level"]) == (False, "WARNING")
    assert checks["b"]["problems"] == ["bucket 'x' does not exist"]
    assert exit_code(results) == 1
    assert not [line for line in lines if line["event"] == "target_finished"]
