"""Partitioned job tables: swept by rows, or old partitions detached and dropped whole."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

import cleanup.targets.postgres.drop as pg_drop
from cleanup.targets.postgres.partitions import upper_bound
from tests.postgres.conftest import ROLE_PASSWORD, Jobs, connect
from tests.support.cli import Result, run_cli, utc

NOW = utc(2026, 6, 15, 12, 0, 0)
CUTOFF = NOW - timedelta(days=30)
LOCK_TIMEOUT = "2s"  # the target's session lock_timeout (cleanup.targets.postgres.db)
# Partitions by age in days: [from, to) before NOW. "old" ends 60 days before NOW, well
# before the cutoff; "straddle" spans it; "new" holds what the application inserts now.
RANGES = {"older": (120, 90), "old": (90, 60), "straddle": (60, 20), "new": (20, -30)}


@dataclass
class Parted:
    jobs: Jobs
    name: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier("public", self.name)

    def part(self, key: str) -> str:
        return f"{self.name}_{key}"

    def insert(self, key: str, count: int, status: str | None, days_ago: float) -> None:
        self.jobs.execute(
            sql.SQL(
                "INSERT INTO {} (created_at, status, payload)"
                " SELECT %s, %s, 'p' FROM generate_series(1, %s)"
            ).format(self.ident),
            (NOW - timedelta(days=days_ago), status, count),
        )

    def count(self, table: str | None = None, where: str = "true") -> int:
        ident = sql.Identifier(table or self.name)
        return int(
            self.jobs.scalar(sql.SQL("SELECT count(*) FROM {} WHERE " + where).format(ident))
        )

    def attached(self) -> set[str]:
        with connect(self.jobs.dsn) as conn:
            rows = conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = %s::regclass",
                (self.name,),
            ).fetchall()
        return {str(r[0]) for r in rows}

    def exists(self, table: str) -> bool:
        return bool(self.jobs.scalar("SELECT to_regclass(%s) IS NOT NULL", (table,)))

    def run(self, *extra: str, env: dict[str, str] | None = None, **keys: Any) -> Result:
        return run_cli(
            [*extra, *self.jobs.argv(table=self.name, **keys)], env or self.jobs.env(), now=NOW
        )


def _make(jobs: Jobs, ts_type: str = "timestamptz", default: bool = False) -> Parted:
    parted = Parted(jobs, f"{jobs.name}_parted")
    jobs.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigserial, created_at " + ts_type + ", status text,"
            " payload text) PARTITION BY RANGE (created_at)"
        ).format(parted.ident)
    )
    for key, (start, end) in RANGES.items():
        lo, hi = (NOW - timedelta(days=start), NOW - timedelta(days=end))
        if ts_type == "timestamp":
            lo, hi = lo.replace(tzinfo=None), hi.replace(tzinfo=None)
        jobs.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(parted.part(key)), parted.ident, sql.Literal(lo), sql.Literal(hi)
            )
        )
    if default:
        jobs.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
                sql.Identifier(parted.part("default")), parted.ident
            )
        )
    jobs.execute(sql.SQL("CREATE INDEX ON {} (created_at)").format(parted.ident))
    return parted


@pytest.fixture
def parted(jobs: Jobs) -> Iterator[Parted]:
    """A RANGE-partitioned job table: an all-eligible old partition ('older': 100 completed
    rows), one that also holds a running job ('old'), one across the cutoff, the newest."""
    table = _make(jobs)
    _fill(table)
    yield table
    jobs.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(table.ident))


def _fill(table: Parted) -> None:
    table.insert("older", 100, "completed", 100)
    table.insert("old", 70, "failed", 80)
    table.insert("old", 1, "running", 70)
    table.insert("straddle", 30, "cancelled", 40)  # eligible
    table.insert("straddle", 20, "completed", 25)  # fresh
    table.insert("new", 40, "completed", 1)


ELIGIBLE = 100 + 70 + 30
KEPT = 1 + 20 + 40


def test_postgres_partitions_rows_mode_sweeps_every_partition_as_one_target(
    parted: Parted,
) -> None:
    """partitions = "rows" deletes the eligible rows of every partition in batches, one
    target_finished for the table, and leaves every partition attached."""
    result = parted.run("--log-level", "DEBUG", batch_size=25)
    assert result.exit_code == 0, result.stdout
    target = result.target("jobs")
    assert (target["status"], target["matched"], target["deleted"]) == ("ok", ELIGIBLE, ELIGIBLE)
    assert len(result.events("target_finished")) == 1
    batches = result.events("item_deleted")
    assert max(b["count"] for b in batches) <= 25
    assert {b["table"] for b in batches} == {
        f"public.{parted.part(k)}" for k in ("older", "old", "straddle")
    }
    assert result.events("partition_dropped") == []
    assert parted.count() == KEPT
    assert parted.attached() == {parted.part(k) for k in RANGES}


def test_postgres_partitions_rows_mode_cap_is_exact_across_partitions(parted: Parted) -> None:
    """max_deletions stops the sweep at exactly that many rows, across partition boundaries."""
    result = parted.run("--max-deletions", "130", batch_size=40)
    assert result.exit_code == 3, result.stdout
    assert (result.target("jobs")["status"], result.target("jobs")["deleted"]) == ("capped", 130)
    assert parted.count() == ELIGIBLE + KEPT - 130


@pytest.mark.parametrize("default", [False, True], ids=["concurrently", "with-default"])
def test_postgres_partitions_drop_mode_drops_old_eligible_partition_keeps_running_job(
    jobs: Jobs, default: bool
) -> None:
    """partitions = "drop" detaches and drops the old all-eligible partition (its rows in
    matched and deleted), sweeps the one holding a running job by rows, keeps that job."""
    table = _make(jobs, default=default)
    _fill(table)
    result = table.run(partitions="drop", batch_size=25)
    assert result.exit_code == 0, result.stdout
    target = result.target("jobs")
    assert (target["status"], target["matched"], target["deleted"]) == ("ok", ELIGIBLE, ELIGIBLE)
    assert target["bytes_freed"] == 0
    (dropped,) = result.events("partition_dropped")
    assert (dropped["partition"], dropped["rows"]) == (f"public.{table.part('older')}", 100)
    assert not table.exists(table.part("older"))
    assert table.part("old") in table.attached()
    assert table.count(table.part("old")) == 1
    assert table.count(where="status = 'running'") == 1
    assert table.count() == KEPT


def test_postgres_partitions_drop_partition_reaching_past_the_cutoff_is_swept_not_dropped(
    jobs: Jobs,
) -> None:
    """A partition whose range reaches past the cutoff is swept by rows even when every row
    it holds now is eligible: a row newer than the cutoff may be written into it any time."""
    table = _make(jobs)
    table.insert("straddle", 30, "cancelled", 40)  # all eligible, but the range ends 20 days ago
    result = table.run(partitions="drop")
    assert result.exit_code == 0, result.stdout
    dropped = {e["partition"] for e in result.events("partition_dropped")}
    # the empty partitions wholly before the cutoff go; the straddling one stays
    assert dropped == {f"public.{table.part('older')}", f"public.{table.part('old')}"}
    assert table.part("straddle") in table.attached()
    assert result.target("jobs")["deleted"] == 30
    assert table.count() == 0


def test_postgres_partitions_drop_dry_run_predicts_the_real_run(parted: Parted) -> None:
    """A dry run in drop mode changes nothing, names the partition it would drop, and
    predicts the counters the real run then has."""
    dry = parted.run("--dry-run", partitions="drop")
    assert dry.exit_code == 0, dry.stdout
    (would,) = dry.events("partition_would_drop")
    assert (would["partition"], would["rows"]) == (f"public.{parted.part('older')}", 100)
    assert parted.attached() == {parted.part(k) for k in RANGES}
    assert parted.count() == ELIGIBLE + KEPT
    real = parted.run(partitions="drop")
    counters = ("status", "scanned", "matched", "failed")
    assert {k: dry.target("jobs")[k] for k in counters} == {
        k: real.target("jobs")[k] for k in counters
    }
    assert real.target("jobs")["deleted"] == dry.target("jobs")["matched"] == ELIGIBLE


def test_postgres_partitions_drop_with_cap_below_partition_sweeps_it_by_rows(
    parted: Parted,
) -> None:
    """A partition larger than what the cap leaves is not dropped: exactly max_deletions
    rows go, and the dry run predicts the same."""
    dry = parted.run("--dry-run", "--max-deletions", "60", partitions="drop")
    real = parted.run("--max-deletions", "60", partitions="drop")
    assert real.exit_code == dry.exit_code == 3, real.stdout
    assert real.target("jobs")["deleted"] == dry.target("jobs")["matched"] == 60
    assert real.events("partition_dropped") == []
    assert parted.count(parted.part("older")) == 40


def test_postgres_partitions_drop_row_appearing_after_detach_is_put_back(
    parted: Parted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row outside the rules that appears between the first look and the detach makes the
    target attach the partition again and sweep it by rows: that row stays in the table."""
    original = pg_drop.Dropper._survey
    calls: list[int] = []

    def survey(self: pg_drop.Dropper, leaf: Any) -> int | None:
        found = original(self, leaf)
        calls.append(1)
        if len(calls) == 1:  # the application marks an old job running again meanwhile
            parted.jobs.execute(
                sql.SQL(
                    "UPDATE {} SET status = 'running' WHERE id = (SELECT min(id) FROM {})"
                ).format(sql.Identifier(parted.part("older")), sql.Identifier(parted.part("older")))
            )
        return found

    monkeypatch.setattr(pg_drop.Dropper, "_survey", survey)
    result = parted.run(partitions="drop")
    assert result.exit_code == 0, result.stdout
    assert result.events("partition_dropped") == []
    assert parted.part("older") in parted.attached()
    assert parted.count(parted.part("older")) == 1
    assert result.target("jobs")["deleted"] == ELIGIBLE - 1


def _waiting(dsn: str, application: str) -> list[int]:
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock'",
            (application,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("default", [False, True], ids=["concurrently", "with-default"])
def test_postgres_partitions_drop_writer_to_newest_partition_waits_at_most_lock_timeout(
    jobs: Jobs, default: bool
) -> None:
    """While the drop waits for a lock another session holds, an application insert into the
    newest partition is never held up longer than lock_timeout: it runs with that same
    lock_timeout and succeeds. The drop gives up and the partition is swept by rows."""
    table = _make(jobs, default=default)
    _fill(table)
    blocker = connect(jobs.dsn)
    writer = psycopg.connect(jobs.dsn, autocommit=True, application_name="app_writer")
    # ACCESS SHARE blocks the plain DETACH's ACCESS EXCLUSIVE; SHARE UPDATE EXCLUSIVE blocks
    # DETACH CONCURRENTLY. Neither blocks an insert by itself.
    mode = "ACCESS SHARE" if default else "SHARE UPDATE EXCLUSIVE"
    outcome: dict[str, Any] = {}
    try:
        blocker.execute("BEGIN")
        blocker.execute(sql.SQL("LOCK TABLE ONLY {} IN " + mode + " MODE").format(table.ident))
        run = threading.Thread(
            target=lambda: outcome.setdefault("run", table.run(partitions="drop"))
        )
        run.start()
        _until(lambda: bool(_waiting(jobs.dsn, "cleanup")), "the drop to wait for its lock")
        writer.execute("SELECT set_config('lock_timeout', %s, false)", (LOCK_TIMEOUT,))

        def insert() -> None:
            began = time.monotonic()
            try:
                writer.execute(
                    sql.SQL("INSERT INTO {} (created_at, status) VALUES (%s, 'queued')").format(
                        table.ident
                    ),
                    (NOW,),
                )
            except psycopg.Error as exc:
                outcome["writer_error"] = exc
            outcome["writer_s"] = time.monotonic() - began

        write = threading.Thread(target=insert)
        write.start()
        if default:
            # The insert queues behind the drop's pending ACCESS EXCLUSIVE request...
            _until(
                lambda: bool(_waiting(jobs.dsn, "app_writer")) or not write.is_alive(),
                "the insert to queue",
            )
            outcome["writer_waited"] = bool(_waiting(jobs.dsn, "app_writer"))
        write.join()
        assert "writer_error" not in outcome, outcome  # ...and never past its lock_timeout
        if default:
            assert outcome["writer_waited"]
        else:
            # DETACH CONCURRENTLY's lock does not stand in an insert's way at all.
            assert _waiting(jobs.dsn, "cleanup"), "the insert finished only after the drop gave up"
        run.join()
    finally:
        blocker.close()
        writer.close()
    result: Result = outcome["run"]
    assert result.exit_code == 0, result.stdout
    (warning,) = result.events("target_warning")
    assert (warning["code"], warning["partition"]) == (
        "partition_drop_timed_out",
        f"public.{table.part('older')}",
    )
    assert result.target("jobs")["deleted"] == ELIGIBLE
    assert table.part("older") in table.attached()
    assert table.count(where="status = 'queued'") == 1
    assert table.count() == KEPT + 1


def test_postgres_partitions_role_that_may_not_drop_falls_back_to_rows(parted: Parted) -> None:
    """A role with SELECT and DELETE on the table and its partitions but owning neither
    cannot detach: a target_warning says so and the old partition is swept by rows."""
    role = f"nodrop_{parted.name}"
    tables = [parted.name, *(parted.part(k) for k in RANGES)]
    with connect(parted.jobs.dsn) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(ROLE_PASSWORD)
            )
        )
        for name in tables:
            conn.execute(
                sql.SQL("GRANT SELECT, DELETE, UPDATE ON {} TO {}").format(
                    sql.Identifier(name), sql.Identifier(role)
                )
            )
    host = parted.jobs.dsn.split("@", 1)[1]
    try:
        dsn = f"postgresql://{role}:{ROLE_PASSWORD}@{host}"
        dry = parted.run("--dry-run", env={"CLEANUP_DATABASE_URL": dsn}, partitions="drop")
        result = parted.run(env={"CLEANUP_DATABASE_URL": dsn}, partitions="drop")
    finally:
        with connect(parted.jobs.dsn) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert result.exit_code == 0, result.stdout
    for run in (dry, result):
        # One per partition whose range lies before the cutoff, whatever it holds.
        warnings = run.events("target_warning")
        assert {w["code"] for w in warnings} == {"partition_drop_not_permitted"}
        assert [w["partition"] for w in warnings] == [
            f"public.{parted.part('older')}",
            f"public.{parted.part('old')}",
        ]
    assert dry.target("jobs")["matched"] == result.target("jobs")["deleted"] == ELIGIBLE
    assert result.events("partition_dropped") == []
    assert parted.part("older") in parted.attached()
    assert parted.count(parted.part("older")) == 0


def test_postgres_partitions_drop_bound_at_the_cutoff_goes_one_past_it_is_swept(
    jobs: Jobs,
) -> None:
    """With a `timestamp` partition key, a partition ending exactly at the cutoff is dropped;
    one ending a second after it is swept by rows (it could hold a row at the cutoff)."""
    name = f"{jobs.name}_ts"
    naive = CUTOFF.replace(tzinfo=None)
    bounds = {"a": (naive - timedelta(days=5), naive), "b": (naive, naive + timedelta(seconds=1))}
    jobs.execute(
        sql.SQL(
            "CREATE TABLE {} (created_at timestamp, status text) PARTITION BY RANGE (created_at)"
        ).format(sql.Identifier(name))
    )
    for key, (lo, hi) in bounds.items():
        jobs.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(f"{name}_{key}"),
                sql.Identifier(name),
                sql.Literal(lo),
                sql.Literal(hi),
            )
        )
    jobs.execute(
        sql.SQL("INSERT INTO {} VALUES (%s, 'completed'), (%s, 'completed')").format(
            sql.Identifier(name)
        ),
        (naive - timedelta(days=1), naive),
    )
    result = run_cli(jobs.argv(table=name, partitions="drop"), jobs.env(), now=NOW)
    assert [e["partition"] for e in result.events("partition_dropped")] == [f"public.{name}_a"], (
        result.stdout
    )
    assert result.target("jobs")["deleted"] == 1
    assert int(jobs.scalar(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))) == 1


@pytest.mark.parametrize("strategy", ["LIST", "SUB"])
def test_postgres_partitions_drop_mode_refuses_list_and_sub_partitioned_tables(
    jobs: Jobs, strategy: str
) -> None:
    """partitions = "drop" on a LIST-partitioned or sub-partitioned table fails the target,
    naming the table and why, and deletes nothing; rows mode sweeps the same table."""
    name = f"{jobs.name}_{strategy.lower()}"
    ident = sql.Identifier(name)
    if strategy == "LIST":
        jobs.execute(
            sql.SQL(
                "CREATE TABLE {} (created_at timestamptz, status text) PARTITION BY LIST (status)"
            ).format(ident)
        )
        jobs.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
                sql.Identifier(name + "_all"), ident
            )
        )
    else:
        jobs.execute(
            sql.SQL(
                "CREATE TABLE {} (created_at timestamptz, status text)"
                " PARTITION BY RANGE (created_at)"
            ).format(ident)
        )
        jobs.execute(
            sql.SQL(
                "CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (MINVALUE) TO (MAXVALUE)"
                " PARTITION BY LIST (status)"
            ).format(sql.Identifier(name + "_mid"), ident)
        )
        jobs.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
                sql.Identifier(name + "_leaf"), sql.Identifier(name + "_mid")
            )
        )
    jobs.execute(
        sql.SQL("INSERT INTO {} VALUES (%s, 'completed'), (%s, 'running')").format(ident),
        (NOW - timedelta(days=40), NOW - timedelta(days=40)),
    )
    refused = run_cli(jobs.argv(table=name, partitions="drop"), jobs.env(), now=NOW)
    target = refused.target("jobs")
    assert (refused.exit_code, target["status"]) == (1, "failed")
    assert name in target["error"]
    assert ("LIST-partitioned" if strategy == "LIST" else "sub-partitioned") in target["error"]
    assert 'partitions = "rows"' in target["error"]
    preflight = run_cli(["--preflight", *jobs.argv(table=name, partitions="drop")], jobs.env())
    assert preflight.exit_code == 1
    swept = run_cli(jobs.argv(table=name), jobs.env(), now=NOW)
    assert swept.target("jobs")["deleted"] == 1, swept.stdout
    assert int(jobs.scalar(sql.SQL("SELECT count(*) FROM {}").format(ident))) == 1


@pytest.mark.parametrize(
    ("bound", "upper"),
    [
        (
            "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')",
            "2026-02-01 00:00:00+00",
        ),
        ("FOR VALUES FROM (MINVALUE) TO ('2026-02-01')", "2026-02-01"),
        ("FOR VALUES FROM ('2026-01-01') TO (MAXVALUE)", None),
        ("FOR VALUES FROM ('a''b') TO ('c'') TO (''d')", "c') TO ('d"),
        ("FOR VALUES FROM ('2026-01-01', 1) TO ('2026-02-01', 5)", None),
        ("FOR VALUES IN ('completed')", None),
        ("FOR VALUES WITH (modulus 4, remainder 0)", None),
        ("DEFAULT", None),
    ],
)
def test_postgres_partitions_upper_bound_reads_one_column_range_bounds_only(
    bound: str, upper: str | None
) -> None:
    """The upper bound's literal is read from a one-column RANGE bound, quotes unescaped;
    MAXVALUE, several columns, LIST, HASH and DEFAULT have none."""
    assert upper_bound(bound) == upper
