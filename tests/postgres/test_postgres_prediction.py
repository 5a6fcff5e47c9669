"""The postgres dry run as a prediction: privileges, the cap's backlog, unmatched statuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import cleanup.targets.postgres.checks as pg_checks
from tests.postgres.conftest import Jobs
from tests.support.cli import Result, run_cli

COUNTERS = ("scanned", "matched", "deleted", "failed", "bytes_freed")


def _outcome(result: Result) -> dict[str, Any]:
    """What a dry run must predict of the real run: counters, status and exit code."""
    target = result.target("jobs")
    return {
        "exit_code": result.exit_code,
        "status": target["status"],
        **{name: target[name] for name in COUNTERS if name != "deleted"},
    }


def test_postgres_role_without_delete_real_run_counts_the_rows_as_failed(
    jobs: Jobs, make_role: Callable[[str], str]
) -> None:
    """A role that may SELECT but not DELETE deletes nothing: the eligible rows are matched
    and failed, one item_failed names the privilege and the table, status partial, exit 1."""
    dsn = make_role("SELECT")
    jobs.fill(7, "40 days", "completed")
    jobs.fill(3, "40 days", "running")
    result = run_cli(jobs.argv(), jobs.env(dsn))
    assert result.exit_code == 1, result.stdout
    target = result.target("jobs")
    assert (target["status"], target["matched"], target["failed"], target["deleted"]) == (
        "partial",
        7,
        7,
        0,
    )
    (failure,) = result.events("item_failed")
    assert "lacks DELETE" in failure["error"] and jobs.name in failure["error"]
    assert (failure["count"], failure["table"]) == (7, f"public.{jobs.name}")
    assert "predicted" not in failure
    assert jobs.count() == 10


@pytest.mark.parametrize(
    ("grants", "status", "exit_code"),
    [("SELECT", "partial", 1), ("SELECT, DELETE", "ok", 0)],
    ids=["select-only", "select-delete"],
)
def test_postgres_dry_run_predicts_the_real_run_of_the_same_role(
    jobs: Jobs, make_role: Callable[[str], str], grants: str, status: str, exit_code: int
) -> None:
    """Run dry, then for real, as the same role: counters, status and exit code are equal,
    and a predicted failure is an item_failed with `predicted: true`."""
    dsn = make_role(grants)
    jobs.fill(12, "40 days", "failed")
    jobs.fill(5, "1 day", "completed")
    dry = run_cli(["--dry-run", *jobs.argv()], jobs.env(dsn))
    assert jobs.count() == 17
    real = run_cli(jobs.argv(), jobs.env(dsn))
    assert _outcome(dry) == _outcome(real)
    assert (_outcome(real)["status"], real.exit_code) == (status, exit_code)
    assert dry.target("jobs")["matched"] == 12
    if status == "partial":
        (predicted,) = dry.events("item_failed")
        assert (predicted["predicted"], predicted["count"]) == (True, 12)
        assert "lacks DELETE" in predicted["error"]
        assert "predicted" not in real.one("item_failed")
        assert jobs.count() == 17
    else:
        assert dry.events("item_failed") == []
        assert (real.target("jobs")["deleted"], jobs.count()) == (12, 5)


def test_postgres_role_without_select_fails_in_dry_and_real_runs(
    jobs: Jobs, make_role: Callable[[str], str]
) -> None:
    """A role that may not even SELECT can count nothing: both runs fail, naming SELECT."""
    dsn = make_role("DELETE")
    jobs.fill(4, "40 days", "completed")
    for argv in (["--dry-run", *jobs.argv()], jobs.argv()):
        result = run_cli(argv, jobs.env(dsn))
        target = result.target("jobs")
        assert (result.exit_code, target["status"]) == (1, "failed")
        assert "lacks SELECT" in target["error"] and jobs.name in target["error"]
    assert jobs.count() == 4


def test_postgres_role_without_delete_and_nothing_eligible_warns(
    jobs: Jobs, make_role: Callable[[str], str]
) -> None:
    """With no eligible row yet, a role without DELETE ends ok but says the next rows will fail."""
    dsn = make_role("SELECT")
    jobs.fill(3, "1 day", "completed")
    result = run_cli(jobs.argv(), jobs.env(dsn))
    assert (result.exit_code, result.target("jobs")["status"]) == (0, "ok")
    (warning,) = result.events("target_warning")
    assert warning["code"] == "delete_not_permitted"
    assert "lacks DELETE" in warning["error"]


def test_postgres_capped_dry_run_reports_the_backlog_and_the_real_run_the_cap(
    jobs: Jobs,
) -> None:
    """A capped dry run matches what the cap lets through and reports every eligible row as
    `backlog`, exit 3; the real run deletes exactly max_deletions, exit 3."""
    jobs.fill(50, "40 days", "completed")
    jobs.fill(9, "40 days", "running")
    dry = run_cli(["--dry-run", "--max-deletions", "20", *jobs.argv()], jobs.env())
    assert dry.exit_code == 3, dry.stdout
    target = dry.target("jobs")
    assert (target["status"], target["matched"], target["backlog"]) == ("capped", 20, 50)
    assert dry.summary["targets"][0]["backlog"] == 50
    assert jobs.count() == 59
    real = run_cli(["--max-deletions", "20", *jobs.argv(batch_size=7)], jobs.env())
    assert real.exit_code == 3
    done = real.target("jobs")
    assert (done["status"], done["deleted"], done["matched"]) == ("capped", 20, 20)
    assert "backlog" not in done
    assert jobs.count() == 39


def test_postgres_statuses_that_never_occur_give_a_target_warning(jobs: Jobs) -> None:
    """`statuses = ["complete"]` (a typo) matches nothing: exit 0, nothing deleted, and a
    statuses_never_match warning names the statuses and some values that do occur."""
    jobs.fill(6, "40 days", "completed")
    jobs.fill(2, "40 days", "running")
    result = run_cli(jobs.argv(statuses=["complete"]), jobs.env())
    assert result.exit_code == 0, result.stdout
    assert result.target("jobs")["deleted"] == 0
    (warning,) = result.events("target_warning")
    assert (warning["code"], warning["level"]) == ("statuses_never_match", "WARNING")
    assert warning["statuses"] == ["complete"]
    assert warning["seen"] == ["completed", "running"]
    assert "'complete'" in warning["message"] and "'completed'" in warning["message"]
    assert jobs.count() == 8
    dry = run_cli(["--dry-run", *jobs.argv(statuses=["complete"])], jobs.env())
    assert [w["code"] for w in dry.events("target_warning")] == ["statuses_never_match"]


@pytest.mark.parametrize(
    ("fills", "statuses"),
    [
        ([("40 days", "completed")], ["completed"]),  # rows matched and deleted
        ([("1 day", "completed"), ("40 days", "running")], ["completed"]),  # not old yet
        ([], ["complete"]),  # an empty table: nothing to compare with
    ],
    ids=["matched", "status-occurs-in-fresh-rows", "empty-table"],
)
def test_postgres_no_status_warning_when_a_status_occurs_or_the_table_is_empty(
    jobs: Jobs, fills: list[tuple[str, str]], statuses: list[str]
) -> None:
    """No statuses_never_match warning while a configured status occurs, or nothing does."""
    for age, status in fills:
        jobs.fill(3, age, status)
    result = run_cli(jobs.argv(statuses=statuses), jobs.env())
    assert result.exit_code == 0
    assert result.events("target_warning") == []


def test_postgres_status_check_that_times_out_is_skipped_not_failed(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status check that runs out of time (a huge table) skips the warning; the run is ok."""
    # Enough rows that looking for the status takes far longer than the 1 ms allowed.
    jobs.fill(200_000, "40 days", "running")
    monkeypatch.setattr(pg_checks, "STATUS_CHECK_TIMEOUT", "1ms")
    result = run_cli(["--log-level", "DEBUG", *jobs.argv(statuses=["complete"])], jobs.env())
    assert (result.exit_code, result.target("jobs")["status"]) == (0, "ok")
    assert result.events("target_warning") == []
    (skipped,) = result.events("statuses_check_skipped")
    assert "statement timeout" in skipped["error"]
