"""Servers older than PostgreSQL 14 (no TID Range Scan, no DETACH ... CONCURRENTLY).

Only PostgreSQL 15 is installable here (Debian 12 ships no older major version), so
these tests run on the real 15 server with the version the target reads forced below
14 through `server_version`, the one function every strategy choice goes through.
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql

import cleanup.targets.postgres.drop as pg_drop
import cleanup.targets.postgres.target as pg_target
from tests.postgres.conftest import Jobs, connect, create_jobs_table
from tests.support.cli import run_cli

OLD_SERVER = 130011


@pytest.fixture
def old_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_target, "server_version", lambda conn: OLD_SERVER)


def test_postgres_old_server_picks_batches_by_timestamp_index_and_warns(
    jobs: Jobs, old_server: None
) -> None:
    """Below 14 the batches pick the oldest eligible rows by the timestamp index (no ctid
    ranges), each within batch_size, skip a row another session holds, and a
    target_warning names the reason."""
    jobs.fill(450, "40 days", "completed")
    jobs.fill(100, "35 days", "running")
    jobs.fill(300, "31 days", "failed")
    jobs.fill(200, "1 day", "completed")
    held = jobs.scalar(sql.SQL("SELECT min(id) FROM {} WHERE status = 'failed'").format(jobs.ident))
    with connect(jobs.dsn) as holder:
        holder.execute("BEGIN")
        holder.execute(
            sql.SQL("SELECT 1 FROM {} WHERE id = %s FOR UPDATE").format(jobs.ident), (held,)
        )
        result = run_cli(["--log-level", "DEBUG", *jobs.argv(batch_size=100)], jobs.env())
        holder.execute("ROLLBACK")
    assert result.exit_code == 0, result.stdout
    (warning,) = result.events("target_warning")
    assert warning["code"] == "server_version_old"
    assert "TID Range Scan" in warning["message"] and "index" in warning["message"]
    assert warning["server_version_num"] == OLD_SERVER
    batches = result.events("item_deleted")
    assert all("first_block" not in b for b in batches)  # not ctid ranges
    assert max(b["count"] for b in batches) <= 100
    assert result.target("jobs")["deleted"] == 749
    assert jobs.count() == 301  # the held row, the running and the fresh ones
    assert jobs.count(f"id = {int(held)}") == 1


def test_postgres_old_server_without_timestamp_index_keeps_ctid_ranges_and_says_why(
    jobs: Jobs, old_server: None
) -> None:
    """Below 14 and with no index on the timestamp column, batches stay ctid ranges (each
    then a scan of the table) and the warning asks for the index."""
    name = f"{jobs.name}_noidx"
    create_jobs_table(jobs.dsn, name)
    jobs.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(f"{name}_created_at_idx")))
    plain = Jobs(jobs.dsn, name, jobs.tmp)
    plain.fill(30, "40 days", "completed")
    result = run_cli(["--log-level", "DEBUG", *plain.argv()], plain.env())
    (warning,) = result.events("target_warning")
    assert warning["code"] == "server_version_old"
    assert "create an index" in warning["message"]
    assert all("first_block" in b for b in result.events("item_deleted"))
    assert result.target("jobs")["deleted"] == 30


def test_postgres_old_server_drops_partitions_without_concurrently(
    jobs: Jobs, old_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below 14 there is no DETACH ... CONCURRENTLY: the old partition is detached and
    dropped in one transaction instead, and its leaves' batches use their own indexes."""
    from tests.postgres.test_postgres_partitions import ELIGIBLE, KEPT, _fill, _make

    table = _make(jobs)
    _fill(table)
    used: list[str] = []
    original = pg_drop.Dropper._in_one_transaction

    def in_one_transaction(self: pg_drop.Dropper, leaf: Any) -> int | None:
        used.append(leaf.info.qualified)
        return original(self, leaf)

    monkeypatch.setattr(pg_drop.Dropper, "_in_one_transaction", in_one_transaction)
    result = table.run(partitions="drop")
    assert result.exit_code == 0, result.stdout
    # Both partitions before the cutoff go that way; the one holding a running job stays.
    assert used == [f"public.{table.part('older')}", f"public.{table.part('old')}"]
    assert [e["partition"] for e in result.events("partition_dropped")] == used[:1]
    assert result.target("jobs")["deleted"] == ELIGIBLE
    assert table.count() == KEPT
