"""The postgres target beside other sessions: locks, writers, a second run, SIGTERM."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql

import cleanup.targets.postgres.batches as pg_batches
import cleanup.targets.postgres.db as pg_db
import cleanup.targets.postgres.target as pg_target
from tests.postgres.conftest import Jobs, connect
from tests.support.cli import run_cli

LOCK_TIMEOUT_S = 2.0  # the target's lock_timeout (cleanup.targets.postgres.db.LOCK_TIMEOUT)


def _lock_key(jobs: Jobs) -> tuple[str, str]:
    return ("public", jobs.name)


def test_postgres_lock_timeout_constant_matches_this_test_module() -> None:
    """The figure the waits below are compared with is the target's real lock_timeout."""
    assert f"{LOCK_TIMEOUT_S:.0f}s" == pg_db.LOCK_TIMEOUT


def test_postgres_advisory_lock_held_elsewhere_skips_the_target(jobs: Jobs) -> None:
    """While another session holds the table's cleanup lock the target is skipped, exit 0."""
    jobs.fill(10, "40 days", "completed")
    with connect(jobs.dsn) as holder:
        holder.execute(
            "SELECT pg_advisory_lock(hashtext('cleanup:' || %s || '.' || %s))", _lock_key(jobs)
        )
        result = run_cli(jobs.argv(), jobs.env())
        assert result.exit_code == 0, result.stdout
        target = result.target("jobs")
        assert (target["status"], target["deleted"]) == ("skipped", 0)
        assert result.one("lock_not_acquired")["table"] == jobs.name
        assert jobs.count() == 10
    after = run_cli(jobs.argv(), jobs.env())
    assert after.target("jobs")["deleted"] == 10
    with connect(jobs.dsn) as other:  # the run released its lock when it finished
        row = other.execute(
            "SELECT pg_try_advisory_lock(hashtext('cleanup:' || %s || '.' || %s))",
            _lock_key(jobs),
        ).fetchone()
        assert row == (True,)


def _subprocess_env(jobs: Jobs) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **jobs.env()}


def _start(jobs: Jobs, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cleanup", "--log-level", "DEBUG", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_subprocess_env(jobs),
    )


def _read_until(proc: subprocess.Popen[str], event: str) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    lines = []
    for raw in proc.stdout:
        lines.append(json.loads(raw))
        if lines[-1]["event"] == event:
            return lines
    raise AssertionError(f"no {event!r} line before the end: {lines}")


def test_postgres_two_concurrent_runs_one_is_skipped(jobs: Jobs) -> None:
    """A second run while the first is deleting is skipped; the first deletes everything."""
    jobs.fill(20000, "40 days", "completed")
    first = _start(jobs, *jobs.argv(batch_size=10))
    try:
        _read_until(first, "item_deleted")
        with connect(jobs.dsn) as conn:
            sessions = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cleanup'"
            ).fetchone()
        second = run_cli(jobs.argv(batch_size=10), jobs.env())
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert second.exit_code == 0
    assert (second.target("jobs")["status"], second.target("jobs")["deleted"]) == ("skipped", 0)
    assert sessions is not None
    assert sessions[0] >= 1  # the first run, found by its application_name
    assert first.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["event"] == "run_finished"
    assert summary["deleted"] == 20000
    assert jobs.count() == 0


@pytest.mark.parametrize(
    "lock_statement",
    [
        "SELECT id FROM {} WHERE id = %s FOR UPDATE",
        "UPDATE {} SET payload = 'busy' WHERE id = %s",
        "SELECT id FROM {} WHERE id = %s FOR KEY SHARE",
    ],
)
def test_postgres_row_locked_by_another_session_is_skipped_not_waited_on(
    jobs: Jobs, lock_statement: str
) -> None:
    """A row another transaction holds is left alone, and the run does not wait for it."""
    jobs.fill(3000, "40 days", "completed")
    locked_id = 1500
    with psycopg.connect(jobs.dsn) as holder:  # not autocommit: the lock stays held
        holder.execute(sql.SQL(lock_statement).format(jobs.ident), (locked_id,))
        began = time.monotonic()
        result = run_cli(jobs.argv(batch_size=200), jobs.env())
        elapsed = time.monotonic() - began
        target = result.target("jobs")
        assert (target["status"], target["deleted"]) == ("ok", 2999), result.stdout
        assert result.events("batch_retry") == []
        assert elapsed < LOCK_TIMEOUT_S  # waiting for the row would take lock_timeout
        assert jobs.count() == 1
        assert jobs.count(f"id = {locked_id}") == 1
        holder.rollback()
    assert run_cli(jobs.argv(), jobs.env()).target("jobs")["deleted"] == 1


def test_postgres_concurrent_writer_never_waits_longer_than_lock_timeout(jobs: Jobs) -> None:
    """A writer inserting and updating rows during the run never waits lock_timeout on it."""
    eligible = 60000
    jobs.fill(eligible, "40 days", "completed")  # ids 1..60000
    jobs.fill(20000, "1 day", "running")
    stop = threading.Event()
    waits: list[tuple[float, float]] = []  # (start, duration) of every writer statement
    inserted: list[int] = []
    rescued: list[int] = []  # old rows the writer turned back to `running`: must survive
    errors: list[BaseException] = []
    insert = sql.SQL(
        "INSERT INTO {} (created_at, status, payload) VALUES (now(), 'running', 'w') RETURNING id"
    ).format(jobs.ident)
    rescue = sql.SQL(
        "UPDATE {} SET status = 'running', payload = 'rescued' WHERE id = %s RETURNING id"
    ).format(jobs.ident)
    touch = sql.SQL("UPDATE {} SET payload = 'touched' WHERE id = %s").format(jobs.ident)

    def writer() -> None:
        rng = random.Random(7)
        try:
            with connect(jobs.dsn) as conn:
                while not stop.is_set():
                    for statement, params, sink in (
                        (insert, None, inserted),
                        (rescue, (rng.randint(1, eligible),), rescued),
                        (touch, (rng.randint(eligible + 1, eligible + 20000),), None),
                    ):
                        began = time.monotonic()
                        cursor = conn.execute(statement, params)
                        row = cursor.fetchone() if sink is not None else None
                        waits.append((began, time.monotonic() - began))
                        if sink is not None and row is not None:
                            sink.append(int(row[0]))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(waits) < 30:
            time.sleep(0.01)
        run_began = time.monotonic()
        result = run_cli(jobs.argv(batch_size=200), jobs.env())
        run_ended = time.monotonic()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    target = result.target("jobs")
    assert target["status"] == "ok", result.stdout
    during = [d for began, d in waits if run_began <= began <= run_ended]
    assert len(during) >= 50, "the writer must overlap the run"
    longest = max(d for _, d in waits)
    print(f"writer: {len(during)} statements during the run, longest {longest * 1000:.1f} ms")
    assert longest < LOCK_TIMEOUT_S
    assert jobs.count(f"id = ANY(ARRAY{sorted(set(rescued))}::bigint[])") == len(set(rescued))
    assert jobs.count(f"id = ANY(ARRAY{inserted}::bigint[])") == len(inserted)
    assert jobs.eligible() == 0
    assert jobs.count() == eligible + 20000 + len(inserted) - target["deleted"]


def test_postgres_sigterm_finishes_the_current_batch_then_stops(jobs: Jobs) -> None:
    """SIGTERM ends the run after the batch in flight: exit 143, counts match the table."""
    jobs.fill(20000, "40 days", "completed")
    proc = _start(jobs, *jobs.argv(batch_size=10))
    try:
        lines = _read_until(proc, "item_deleted")
        proc.send_signal(signal.SIGTERM)
        # The rest through the same file object: communicate() would read the pipe
        # itself and lose the lines _read_until's iteration already buffered.
        assert proc.stdout is not None and proc.stderr is not None
        killer = threading.Timer(60, proc.kill)
        killer.start()
        try:
            out, err = proc.stdout.read(), proc.stderr.read()
            proc.wait(10)
        finally:
            killer.cancel()
    finally:
        proc.kill()
    lines += [json.loads(raw) for raw in out.splitlines()]
    assert proc.returncode == 143, err
    assert err == "", f"json format wrote to stderr: {err}"
    summary = lines[-1]
    assert (summary["event"], summary["status"]) == ("run_finished", "interrupted")
    (target,) = [x for x in lines if x["event"] == "target_finished"]
    assert target["status"] == "interrupted"
    batches = sum(x["count"] for x in lines if x["event"] == "item_deleted")
    assert 0 < target["deleted"] == batches < 20000
    assert jobs.count() == 20000 - target["deleted"]


def _lock_table_on_first_batch(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch, release_after: float | None
) -> list[psycopg.Connection[Any]]:
    """Make another session take ACCESS EXCLUSIVE on the table just before the first batch."""
    monkeypatch.setattr(pg_db, "LOCK_TIMEOUT", "100ms")
    monkeypatch.setattr(pg_batches, "RETRY_BACKOFF_S", 0.05)
    holders: list[psycopg.Connection[Any]] = []
    original = pg_target.PostgresTarget._batch

    def batch(self: pg_target.PostgresTarget, *args: Any) -> tuple[int, float]:
        if not holders:
            holder = psycopg.connect(jobs.dsn)
            holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(jobs.ident))
            holders.append(holder)
            if release_after is not None:
                threading.Timer(release_after, holder.rollback).start()
        return original(self, *args)

    monkeypatch.setattr(pg_target.PostgresTarget, "_batch", batch)
    return holders


def test_postgres_batch_lock_timeout_is_retried_then_succeeds(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that hits lock_timeout is retried, and the run completes once the lock goes."""
    jobs.fill(500, "40 days", "completed")
    holders = _lock_table_on_first_batch(jobs, monkeypatch, release_after=0.3)
    try:
        result = run_cli(jobs.argv(), jobs.env())
    finally:
        for holder in holders:
            holder.close()
    retries = result.events("batch_retry")
    assert retries, result.stdout
    assert all("lock timeout" in r["error"] for r in retries)
    assert (result.target("jobs")["status"], result.target("jobs")["deleted"]) == ("ok", 500)


def test_postgres_batch_lock_timeout_retried_a_bounded_number_of_times_then_fails(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock that never goes fails the target after the bounded retries, deleting nothing."""
    jobs.fill(500, "40 days", "completed")
    holders = _lock_table_on_first_batch(jobs, monkeypatch, release_after=None)
    try:
        result = run_cli(jobs.argv(), jobs.env())
    finally:
        for holder in holders:
            holder.close()
    assert result.exit_code == 1
    target = result.target("jobs")
    assert target["status"] == "failed"
    assert f"failed {pg_batches.BATCH_RETRIES + 1} times" in target["error"]
    assert "lock timeout" in target["error"]
    assert len(result.events("batch_retry")) == pg_batches.BATCH_RETRIES
    assert jobs.count() == 500
