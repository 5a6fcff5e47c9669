"""How the postgres target fails: clearly, alone, and without leaking the password."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import cleanup.targets.postgres.batches as pg_batches
from cleanup.targets.postgres.db import describe
from tests.postgres.conftest import Jobs, connect
from tests.support.cli import run_cli

SECRET = "Zq7-very-secret-pa55word"


def test_postgres_missing_table_fails_naming_it(jobs: Jobs) -> None:
    """A table that does not exist fails the target with its name in the error."""
    path = jobs.config(table="no_such_jobs")
    result = run_cli(["--config", str(path)], jobs.env())
    assert result.exit_code == 1
    target = result.target("jobs")
    assert target["status"] == "failed"
    assert "public.no_such_jobs" in target["error"]
    assert "does not exist" in target["error"]


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"timestamp_column": "finished_at"}, "finished_at"),
        ({"status_column": "state"}, "state"),
        ({"timestamp_column": "status"}, "status"),  # exists, but is text
    ],
)
def test_postgres_missing_or_mistyped_column_fails_naming_it(
    jobs: Jobs, keys: dict[str, str], named: str
) -> None:
    """A missing column, or a timestamp column of the wrong type, fails naming the column."""
    jobs.fill(5, "40 days", "completed")
    result = run_cli(jobs.argv(**keys), jobs.env())
    target = result.target("jobs")
    assert target["status"] == "failed"
    assert repr(named) in target["error"]
    assert jobs.name in target["error"]
    assert jobs.count() == 5


@pytest.mark.parametrize(
    "suffix",
    [
        '"; DROP TABLE {victim}; --',
        "; DROP TABLE {victim}; --",
        "' OR 1=1; DELETE FROM {victim}; --",
    ],
)
def test_postgres_injection_in_table_name_touches_nothing(jobs: Jobs, suffix: str) -> None:
    """A table name carrying SQL is quoted as one identifier: a clear failure, no harm done."""
    victim = f"{jobs.name}_victim"
    jobs.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(victim)))
    jobs.execute(sql.SQL("INSERT INTO {} VALUES (1), (2)").format(sql.Identifier(victim)))
    jobs.fill(7, "40 days", "completed")
    hostile = jobs.name + suffix.format(victim=victim)
    result = run_cli(jobs.argv(table=hostile), jobs.env())
    target = result.target("jobs")
    assert target["status"] == "failed"
    assert "does not exist" in target["error"]
    assert target["deleted"] == 0
    assert jobs.scalar(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(victim))) == 2
    assert jobs.count() == 7


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_postgres_connection_refused_fails_alone_and_other_targets_run(
    jobs: Jobs, tmp_path: Path
) -> None:
    """A refused connection fails the postgres target; a volume target still runs; exit 1."""
    volume = tmp_path / "vol"
    volume.mkdir()
    old = volume / "old.log"
    old.write_text("x")
    past = time.time() - 40 * 86400
    os.utime(old, (past, past))
    config = jobs.config()
    config.write_text(
        config.read_text() + f'\n[[volumes]]\nname = "temp"\npath = "{volume}"\nmax_age = "1d"\n'
    )
    dsn = f"postgresql://cleanup:{SECRET}@127.0.0.1:{_closed_port()}/postgres"
    began = time.monotonic()
    result = run_cli(["--config", str(config)], {"CLEANUP_DATABASE_URL": dsn})
    assert time.monotonic() - began < 15
    assert result.exit_code == 1
    pg = result.target("jobs")
    assert pg["status"] == "failed"
    assert "cannot connect" in pg["error"]
    assert result.target("temp")["status"] == "ok"
    assert not old.exists()
    assert SECRET not in result.stdout + result.stderr


def _create_role(jobs: Jobs, grants: str) -> str:
    role = f"r_{jobs.name}"
    with connect(jobs.dsn) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(SECRET)
            )
        )
        conn.execute(
            sql.SQL("GRANT " + grants + " ON {} TO {}").format(jobs.ident, sql.Identifier(role))
        )
    host = jobs.dsn.split("@", 1)[1]
    return f"postgresql://{role}:{SECRET}@{host}"


@pytest.fixture
def limited_role(jobs: Jobs) -> str:
    """A login role with SELECT and DELETE on the table and nothing else; its DSN."""
    return _create_role(jobs, "SELECT, DELETE")


def _hold_row_lock(jobs: Jobs, row_id: int, release: threading.Event) -> threading.Thread:
    """Lock one row FOR UPDATE in another session until `release` is set, then roll back."""
    ready = threading.Event()

    def hold() -> None:
        with psycopg.connect(jobs.dsn) as holder:
            holder.execute(
                sql.SQL("SELECT id FROM {} WHERE id = %s FOR UPDATE").format(jobs.ident), (row_id,)
            )
            ready.set()
            release.wait(120)
            holder.rollback()

    thread = threading.Thread(target=hold)
    thread.start()
    assert ready.wait(30), f"the session locking row {row_id} did not get its lock"
    return thread


def test_postgres_least_privilege_role_runs_and_password_never_printed(
    jobs: Jobs, limited_role: str
) -> None:
    """A role with only SELECT and DELETE deletes; no output line has its password."""
    jobs.fill(20, "40 days", "completed")
    result = run_cli(["--log-level", "DEBUG", *jobs.argv(batch_size=7)], jobs.env(limited_role))
    assert result.target("jobs")["deleted"] == 20, result.stdout
    assert SECRET not in result.stdout + result.stderr
    checked = run_cli(["--check-config", *jobs.argv()], jobs.env(limited_role))
    assert checked.exit_code == 0
    assert SECRET not in checked.stdout + checked.stderr


@pytest.mark.parametrize(
    "grants",
    ["SELECT, DELETE", "SELECT, DELETE, UPDATE (id)"],
    ids=["least-privilege", "one-column-update"],
)
def test_postgres_rows_locked_elsewhere_are_left_not_waited_on(jobs: Jobs, grants: str) -> None:
    """Rows another session holds are left for the next run, with or without the grant that
    allows SKIP LOCKED; the rest of the table goes, and no lock is waited out."""
    dsn = _create_role(jobs, grants)
    jobs.fill(1000, "40 days", "completed")
    release = threading.Event()
    holders = [_hold_row_lock(jobs, row, release) for row in (1, 250, 251, 500, 999)]
    try:
        # The holders keep their locks until the run has ended: a run that waited on one
        # would meet lock_timeout again and again and end `failed`.
        result = run_cli(jobs.argv(batch_size=100), jobs.env(dsn))
    finally:
        release.set()
        for holder in holders:
            holder.join()
    target = result.target("jobs")
    assert (target["status"], target["deleted"]) == ("ok", 995), result.stdout
    assert not result.events("batch_retry"), "a lock was waited out"
    assert jobs.count("id IN (1, 250, 251, 500, 999)") == 5


def test_postgres_least_privilege_table_lock_is_waited_on_then_fails(jobs: Jobs) -> None:
    """A table lock that blocks DELETE is not split around row by row: the batch waits,
    retries a bounded number of times and fails the target, deleting nothing."""
    dsn = _create_role(jobs, "SELECT, DELETE")
    jobs.fill(300, "40 days", "completed")
    with psycopg.connect(jobs.dsn) as holder:
        holder.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(jobs.ident))
        result = run_cli(jobs.argv(batch_size=100), jobs.env(dsn))
        holder.rollback()
    target = result.target("jobs")
    assert target["status"] == "failed"
    assert "lock timeout" in target["error"]
    assert len(result.events("batch_retry")) == pg_batches.BATCH_RETRIES
    assert jobs.count() == 300


@pytest.mark.parametrize(
    "make_dsn",
    [
        lambda role, host: f"postgresql://{role}:{SECRET}x@{host}",  # wrong password
        lambda role, host: f"host=127.0.0.1 port=1 user={role} password={SECRET} bogus",  # bad DSN
        lambda role, host: f"postgresql://{role}:{SECRET}@{host}?sslmode=nonsense",
    ],
)
def test_postgres_password_never_appears_in_errors(
    jobs: Jobs, limited_role: str, make_dsn: object
) -> None:
    """Authentication failures and malformed DSNs fail without echoing the password."""
    assert callable(make_dsn)
    role = limited_role.split("://", 1)[1].split(":", 1)[0]
    host = limited_role.split("@", 1)[1]
    result = run_cli(["--log-level", "DEBUG", *jobs.argv()], jobs.env(make_dsn(role, host)))
    target = result.target("jobs")
    assert target["status"] == "failed"
    assert target["error"]
    assert SECRET not in result.stdout + result.stderr


# A key=value password must be quoted when it holds spaces; a quote inside is escaped.
SPACED = "Zq7 it's a very secret pa55"
SPACED_DSN = "host=127.0.0.1 port={port} user={role} password='Zq7 it\\'s a very secret pa55'"


def test_postgres_redaction_reads_a_quoted_key_value_password_as_libpq_does() -> None:
    """A quoted password with spaces and an escaped quote is removed in the form libpq
    reads it (unquoted, unescaped), wherever it shows up in a message."""
    dsn = SPACED_DSN.format(port=5432, role="app")
    assert conninfo_to_dict(dsn)["password"] == SPACED
    error = RuntimeError(f"server said: bad password {SPACED!r} for {SPACED}, in {dsn}")
    text = describe(error, dsn)
    for fragment in ("Zq7", "very secret", "pa55"):
        assert fragment not in text
    assert "<redacted>" in text


def test_postgres_spaced_password_in_a_key_value_dsn_never_appears(
    jobs: Jobs, limited_role: str
) -> None:
    """A wrong quoted password with spaces fails authentication without any of it printed."""
    role = limited_role.split("://", 1)[1].split(":", 1)[0]
    port = urlsplit(jobs.dsn).port
    dsn = SPACED_DSN.format(port=port, role=role)
    result = run_cli(["--log-level", "DEBUG", *jobs.argv()], jobs.env(dsn))
    target = result.target("jobs")
    assert (target["status"], result.exit_code) == ("failed", 1)
    assert "password authentication failed" in target["error"]
    for fragment in ("Zq7", "very secret", "pa55"):
        assert fragment not in result.stdout + result.stderr


def test_postgres_warns_when_no_index_leads_with_the_timestamp(jobs: Jobs) -> None:
    """Without an index whose first column is the timestamp, a WARNING event says so."""
    indexed = run_cli(jobs.argv(), jobs.env())
    assert indexed.events("timestamp_not_indexed") == []
    name = f"{jobs.name}_noidx"
    jobs.execute(
        sql.SQL("CREATE TABLE {} (id int, created_at timestamptz, status text)").format(
            sql.Identifier(name)
        )
    )
    jobs.execute(sql.SQL("CREATE INDEX ON {} (status, created_at)").format(sql.Identifier(name)))
    result = run_cli(jobs.argv(table=name), jobs.env())
    (warning,) = result.events("timestamp_not_indexed")
    assert warning["level"] == "WARNING"
    assert warning["column"] == "created_at"
    assert result.target("jobs")["status"] == "ok"
