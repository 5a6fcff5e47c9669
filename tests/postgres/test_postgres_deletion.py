"""What the postgres target deletes, how it counts, and the dry run."""

from __future__ import annotations

import dataclasses
import time
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from psycopg import sql

import cleanup.targets.postgres.batches as pg_batches
from cleanup.targets.postgres.target import PostgresTarget
from tests.postgres.conftest import Jobs, connect, create_jobs_table
from tests.support.cli import run_cli, utc

NOW = utc(2026, 6, 15, 12, 0, 0)
CUTOFF = NOW - timedelta(days=30)


def _insert(jobs: Jobs, rows: list[tuple[str, datetime | date | None, str | None]]) -> None:
    for payload, created_at, status in rows:
        jobs.execute(
            sql.SQL("INSERT INTO {} (created_at, status, payload) VALUES (%s, %s, %s)").format(
                jobs.ident
            ),
            (created_at, status, payload),
        )


def _payloads(jobs: Jobs) -> set[str]:
    with connect(jobs.dsn) as conn:
        rows = conn.execute(sql.SQL("SELECT payload FROM {}").format(jobs.ident)).fetchall()
    return {row[0] for row in rows}


def test_postgres_eligibility_matrix_deletes_only_old_finished_rows(jobs: Jobs) -> None:
    """Only rows strictly older than the cutoff with a finished status go; NULLs never do."""
    old = CUTOFF - timedelta(days=1)
    _insert(
        jobs,
        [
            ("old-completed", old, "completed"),
            ("old-failed", old, "failed"),
            ("old-cancelled", old, "cancelled"),
            ("just-before-cutoff", CUTOFF - timedelta(microseconds=1), "completed"),
            ("at-cutoff", CUTOFF, "completed"),
            ("old-running", old, "running"),
            ("old-queued", old, "queued"),
            ("fresh-completed", NOW - timedelta(days=1), "completed"),
            ("old-null-status", old, None),
            ("null-timestamp", None, "completed"),
        ],
    )
    result = run_cli(jobs.argv(), jobs.env(), now=NOW)
    assert result.exit_code == 0, result.stdout
    target = result.target("jobs")
    assert (target["status"], target["deleted"], target["matched"]) == ("ok", 4, 4)
    assert target["bytes_freed"] == 0
    assert _payloads(jobs) == {
        "at-cutoff",
        "old-running",
        "old-queued",
        "fresh-completed",
        "old-null-status",
        "null-timestamp",
    }


@pytest.mark.parametrize("ts_type", ["timestamp", "date"])
def test_postgres_other_timestamp_types_compare_as_utc(jobs: Jobs, ts_type: str) -> None:
    """`timestamp` (read as UTC) and `date` columns work and keep rows at or after the cutoff."""
    name = f"{jobs.name}_{ts_type}"
    create_jobs_table(jobs.dsn, name, ts_type=ts_type)
    typed = Jobs(jobs.dsn, name, jobs.tmp)
    naive_cutoff = CUTOFF.replace(tzinfo=None)
    if ts_type == "timestamp":
        old, kept = naive_cutoff - timedelta(seconds=1), naive_cutoff
        rows: list[tuple[str, datetime | date | None, str | None]] = [
            ("old", old, "completed"),
            ("kept", kept, "completed"),
        ]
    else:
        # A date is midnight UTC: the cutoff's own day began before the cutoff (12:00).
        rows = [
            ("old", CUTOFF.date(), "completed"),
            ("kept", CUTOFF.date() + timedelta(days=1), "completed"),
        ]
    _insert(typed, rows)
    result = run_cli(typed.argv(), typed.env(), now=NOW)
    assert result.target("jobs")["deleted"] == 1, result.stdout
    assert _payloads(typed) == {"kept"}


def test_postgres_empty_status_column_deletes_by_age_only(jobs: Jobs) -> None:
    """With status_column = "" every old row goes, whatever its status (NULL timestamps stay)."""
    jobs.fill(3, "40 days", "running")
    jobs.fill(2, "40 days", None)
    jobs.fill(4, "1 day", "completed")
    jobs.execute(sql.SQL("INSERT INTO {} (created_at) VALUES (NULL)").format(jobs.ident))
    result = run_cli(jobs.argv(status_column=""), jobs.env())
    assert result.target("jobs")["deleted"] == 5, result.stdout
    assert jobs.count() == 5


def test_postgres_many_batches_delete_every_eligible_row_within_batch_size(jobs: Jobs) -> None:
    """Eligible rows spread over many batches are all deleted, no batch above batch_size."""
    for _ in range(3):  # interleave eligible and kept rows across the heap
        jobs.fill(3000, "40 days", "completed")
        jobs.fill(1000, "40 days", "running")
        jobs.fill(1000, "1 day", "failed")
    jobs.execute(sql.SQL("ANALYZE {}").format(jobs.ident))
    result = run_cli(["--log-level", "DEBUG", *jobs.argv(batch_size=250)], jobs.env())
    target = result.target("jobs")
    assert (target["status"], target["deleted"], target["matched"]) == ("ok", 9000, 9000)
    batches = [e["count"] for e in result.events("item_deleted")]
    assert sum(batches) == 9000
    assert len(batches) >= 36
    assert max(batches) <= 250
    assert jobs.count() == 6000
    assert jobs.eligible() == 0


def test_postgres_dense_region_after_sparse_one_never_exceeds_batch_size(jobs: Jobs) -> None:
    """Ranges grown over fresh rows that then meet dense eligible rows still cap each batch."""
    jobs.fill(6000, "1 day", "completed")  # sparse: ranges grow while they find nothing
    jobs.fill(6000, "40 days", "failed")  # dense: a grown range holds far more than a batch
    result = run_cli(["--log-level", "DEBUG", *jobs.argv(batch_size=100)], jobs.env())
    batches = [e["count"] for e in result.events("item_deleted")]
    assert result.target("jobs")["deleted"] == 6000, result.stdout
    assert sum(batches) == 6000
    assert max(batches) <= 100
    assert jobs.count() == 6000


def test_postgres_fast_path_cut_by_its_statement_timeout_falls_back_to_limited_batches(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When every whole-range DELETE runs too long, limited batches still delete exactly."""
    monkeypatch.setattr(pg_batches, "QUICK_STATEMENT_TIMEOUT", "20ms")
    original = PostgresTarget._queries

    def slow_fast_path(self: PostgresTarget, table: sql.Identifier) -> Any:
        queries = original(self, table)
        # An initplan that sleeps 1 s: the quick statement_timeout cancels it every time.
        slow = queries.whole_range + sql.SQL(" AND (SELECT pg_sleep(1)) IS NOT NULL")
        return dataclasses.replace(queries, whole_range=slow)

    monkeypatch.setattr(PostgresTarget, "_queries", slow_fast_path)
    jobs.fill(3000, "40 days", "completed")
    jobs.fill(1000, "40 days", "running")
    result = run_cli(["--log-level", "DEBUG", *jobs.argv(batch_size=400)], jobs.env())
    batches = [e["count"] for e in result.events("item_deleted")]
    assert result.target("jobs")["status"] == "ok", result.stdout
    assert sum(batches) == 3000
    assert max(batches) <= 400
    assert result.events("batch_retry") == []
    # Each limited batch came after a cancelled fast attempt.
    assert result.one("batches_finished")["transactions"] >= 2 * len(batches)
    assert jobs.count() == 1000


def test_postgres_table_without_primary_key_is_deleted_by_ctid(jobs: Jobs) -> None:
    """A table with no primary key and duplicate rows loses exactly its eligible rows."""
    name = f"{jobs.name}_nopk"
    create_jobs_table(jobs.dsn, name, primary_key=False)
    nopk = Jobs(jobs.dsn, name, jobs.tmp)
    nopk.fill(1200, "40 days", "completed")  # identical rows: only ctid tells them apart
    nopk.fill(300, "40 days", "running")
    nopk.fill(300, "2 days", "completed")
    result = run_cli(nopk.argv(batch_size=100), nopk.env())
    assert result.target("jobs")["deleted"] == 1200, result.stdout
    assert nopk.count() == 600
    assert nopk.eligible() == 0


def test_postgres_dry_run_counts_and_real_run_deletes_the_same(jobs: Jobs) -> None:
    """A dry run changes nothing and predicts exactly what the real run then deletes."""
    jobs.fill(1234, "40 days", "cancelled")
    jobs.fill(500, "40 days", "running")
    jobs.fill(500, "1 day", "completed")
    before = jobs.scalar(
        sql.SQL("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM {} t").format(jobs.ident)
    )
    dry = run_cli(["--dry-run", "--log-level", "DEBUG", *jobs.argv(batch_size=100)], jobs.env())
    assert dry.exit_code == 0
    predicted = dry.target("jobs")
    assert (predicted["matched"], predicted["deleted"], predicted["dry_run"]) == (1234, 0, True)
    assert [e["count"] for e in dry.events("item_would_delete")] == [1234]
    assert dry.events("item_deleted") == []
    after = jobs.scalar(
        sql.SQL("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM {} t").format(jobs.ident)
    )
    assert after == before
    real = run_cli(jobs.argv(batch_size=100), jobs.env())
    assert real.target("jobs")["deleted"] == predicted["matched"]
    assert jobs.count() == 1000


def test_postgres_cap_deletes_exactly_max_deletions_and_exits_3(jobs: Jobs) -> None:
    """With --max-deletions the target deletes exactly that many rows and ends `capped`."""
    jobs.fill(2000, "40 days", "completed")
    result = run_cli(["--max-deletions", "777", *jobs.argv(batch_size=100)], jobs.env())
    assert result.exit_code == 3
    target = result.target("jobs")
    assert (target["status"], target["deleted"]) == ("capped", 777)
    assert jobs.count() == 2000 - 777


def test_postgres_dry_run_with_cap_predicts_the_cap(jobs: Jobs) -> None:
    """A capped dry run predicts max_deletions rows, as the real run would delete."""
    jobs.fill(500, "40 days", "failed")
    result = run_cli(["--dry-run", "--max-deletions", "120", *jobs.argv()], jobs.env())
    target = result.target("jobs")
    assert (target["status"], target["matched"], target["scanned"]) == ("capped", 120, 500)
    assert jobs.count() == 500


def test_postgres_quick_target_from_environment_runs_end_to_end(jobs: Jobs) -> None:
    """CLEANUP_PG_* with CLEANUP_DATABASE_URL and no file runs a target named `postgres`."""
    jobs.fill(10, "40 days", "done")
    jobs.fill(5, "40 days", "completed")
    env = {
        "CLEANUP_DATABASE_URL": jobs.dsn,
        "CLEANUP_PG_TABLE": jobs.name,
        "CLEANUP_PG_STATUSES": "done,other",
        "CLEANUP_MAX_AGE": "30d",
    }
    result = run_cli([], env)
    assert result.exit_code == 0, result.stdout
    target = result.target("postgres")
    assert (target["kind"], target["deleted"]) == ("postgres", 10)
    assert jobs.count() == 5


def test_postgres_empty_dsn_uses_libpq_environment(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the DSN variable unset, libpq's PG* variables locate the server."""
    url = urlsplit(jobs.dsn)
    libpq = {
        "PGHOST": url.hostname,
        "PGPORT": str(url.port),
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.path.lstrip("/"),
    }
    for key, value in libpq.items():
        assert value
        monkeypatch.setenv(key, value)  # libpq reads the process environment
    jobs.fill(3, "40 days", "completed")
    # The configuration reads the environment main() is given: it must see them too.
    result = run_cli(jobs.argv(), {k: v for k, v in libpq.items() if v})
    assert result.target("jobs")["deleted"] == 3, result.stdout


def test_postgres_progress_events_report_counters(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long deletes log `progress` events with the counters."""
    jobs.fill(20000, "40 days", "completed")
    original = PostgresTarget._batch

    def slow_batch(self: PostgresTarget, *args: Any) -> tuple[int, float]:
        time.sleep(0.05)  # spread the batches over several progress ticks
        return original(self, *args)

    monkeypatch.setattr(PostgresTarget, "_batch", slow_batch)
    env = {**jobs.env(), "CLEANUP_PROGRESS_INTERVAL": "1s"}
    result = run_cli(jobs.argv(batch_size=500), env)
    progress = result.events("progress")
    assert progress, result.stdout
    assert all(p["target"] == "jobs" and p["kind"] == "postgres" for p in progress)
    assert 0 < progress[0]["deleted"] < 20000
    assert result.target("jobs")["deleted"] == 20000
