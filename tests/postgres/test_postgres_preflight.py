"""`--preflight` of the postgres target, and a missing DSN (fails at once, naming its variable)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from tests.postgres.conftest import Jobs
from tests.support.cli import Result, run_cli


def _fingerprint(jobs: Jobs) -> str:
    """The table's rows, so a check can show that nothing changed."""
    query = sql.SQL("SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM {} t")
    return str(jobs.scalar(query.format(jobs.ident)))


def _problems(result: Result) -> list[str]:
    (event,) = [e for e in result.events("preflight") if e["target"] == "jobs"]
    assert event["ready"] is (not event["problems"])
    problems = event["problems"]
    assert isinstance(problems, list)
    return problems


def test_postgres_preflight_ready_exits_0_and_changes_nothing(jobs: Jobs) -> None:
    """A reachable table with its columns and a role that may SELECT and DELETE is ready."""
    jobs.fill(5, "40 days", "completed")
    before = _fingerprint(jobs)
    result = run_cli(["--preflight", *jobs.argv()], jobs.env())
    assert result.exit_code == 0, result.stdout
    event = result.one("preflight")
    assert (event["ready"], event["problems"], event["level"]) == (True, [], "INFO")
    assert result.events("target_finished") == []
    assert _fingerprint(jobs) == before


def test_postgres_preflight_missing_table_names_it(jobs: Jobs) -> None:
    """A table that does not exist: not ready, exit 1, the problem names schema.table."""
    result = run_cli(["--preflight", *jobs.argv(table="no_such_jobs")], jobs.env())
    assert result.exit_code == 1
    (problem,) = _problems(result)
    assert "'public.no_such_jobs' does not exist" in problem
    assert result.one("preflight")["level"] == "WARNING"


def test_postgres_preflight_missing_column_names_it(jobs: Jobs) -> None:
    """A configured column that does not exist: exit 1, the problem names column and table."""
    jobs.fill(3, "40 days", "completed")
    before = _fingerprint(jobs)
    result = run_cli(["--preflight", *jobs.argv(status_column="state")], jobs.env())
    assert result.exit_code == 1
    (problem,) = _problems(result)
    assert "'state'" in problem and jobs.name in problem and "status_column" in problem
    assert _fingerprint(jobs) == before


def test_postgres_preflight_role_without_delete_names_the_privilege(
    jobs: Jobs, make_role: Callable[[str], str]
) -> None:
    """A role that may SELECT but not DELETE is not ready: the problem names DELETE, the
    table and the grant to run; no row is deleted."""
    jobs.fill(4, "40 days", "completed")
    before = _fingerprint(jobs)
    dsn = make_role("SELECT")
    role = dsn.split("://", 1)[1].split(":", 1)[0]
    result = run_cli(["--preflight", *jobs.argv()], jobs.env(dsn))
    assert result.exit_code == 1
    (problem,) = _problems(result)
    assert "lacks DELETE" in problem and f"public.{jobs.name}" in problem
    assert f"GRANT DELETE ON public.{jobs.name} TO {role}" in problem
    assert _fingerprint(jobs) == before
    both = run_cli(["--preflight", *jobs.argv()], jobs.env(make_role("SELECT, DELETE")))
    assert (both.exit_code, _problems(both)) == (0, [])


def test_postgres_preflight_reports_every_problem_it_finds(
    jobs: Jobs, make_role: Callable[[str], str]
) -> None:
    """A role with no privilege on a table missing a column: each problem is listed."""
    result = run_cli(
        ["--preflight", *jobs.argv(timestamp_column="finished_at")], jobs.env(make_role(""))
    )
    problems = " | ".join(_problems(result))
    assert result.exit_code == 1
    for expected in ("lacks SELECT", "lacks DELETE", "'finished_at' does not exist"):
        assert expected in problems


def test_postgres_preflight_mistyped_or_partitioned_table_is_not_ready(jobs: Jobs) -> None:
    """A timestamp column of the wrong type, and a table of a kind the target cannot sweep,
    are problems that say what is wrong."""
    typed = run_cli(["--preflight", *jobs.argv(timestamp_column="payload")], jobs.env())
    (problem,) = _problems(typed)
    assert "'payload'" in problem and "expected timestamptz" in problem
    view = f"{jobs.name}_view"
    jobs.execute(
        sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(sql.Identifier(view), jobs.ident)
    )
    viewed = run_cli(["--preflight", *jobs.argv(table=view)], jobs.env())
    (problem,) = _problems(viewed)
    assert "is not a table" in problem and view in problem
    jobs.execute(sql.SQL("DROP VIEW {}").format(sql.Identifier(view)))


def test_postgres_preflight_unreachable_server_is_not_ready(jobs: Jobs) -> None:
    """A server that refuses connections: the problem says what to check, naming the variable."""
    result = run_cli(
        ["--preflight", *jobs.argv()],
        {"CLEANUP_DATABASE_URL": "postgresql://nobody:pw-never-shown@127.0.0.1:1/postgres"},
    )
    assert result.exit_code == 1
    (problem,) = _problems(result)
    assert "cannot connect" in problem and "CLEANUP_DATABASE_URL" in problem
    assert "pw-never-shown" not in result.stdout


def test_postgres_preflight_missing_dsn_names_the_variable(jobs: Jobs) -> None:
    """With the DSN variable unset: not ready, exit 1, the problem names that variable."""
    result = run_cli(["--preflight", *jobs.argv(dsn_env="JOBS_DB_URL")], {})
    assert result.exit_code == 1
    (problem,) = _problems(result)
    assert "JOBS_DB_URL" in problem and "not set" in problem


def test_postgres_missing_dsn_fails_at_once_naming_the_variable_and_others_run(
    jobs: Jobs, tmp_path: Path
) -> None:
    """A DSN variable that is unset or empty, with no libpq variable either, fails the target
    at once (no connection attempt, no retries) naming the variable; a volume target runs."""
    volume = tmp_path / "vol"
    volume.mkdir()
    for env in ({}, {"JOBS_DB_URL": ""}):
        old = volume / "old.log"
        old.write_text("x")
        past = time.time() - 40 * 86400
        os.utime(old, (past, past))
        config = jobs.config(dsn_env="JOBS_DB_URL")
        config.write_text(
            config.read_text()
            + f'\n[[volumes]]\nname = "temp"\npath = "{volume}"\nmax_age = "1d"\n'
        )
        result = run_cli(["--config", str(config)], env)
        assert result.exit_code == 1, result.stdout
        target = result.target("jobs")
        assert target["status"] == "failed"
        assert "JOBS_DB_URL" in target["error"] and "not set" in target["error"]
        assert target["duration_s"] < 1.0  # no connection attempt, no back-off
        assert result.target("temp")["status"] == "ok"
        assert not old.exists()
