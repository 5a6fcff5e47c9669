"""The postgres target's steps that only read: preflight, counts, the status warning.

The dry run and a run whose role may not DELETE count the eligible rows in one
read-only statement and report them the same way, so a preview ends in the status
the real run ends in. After a run that matched nothing, a cheap, bounded check warns
when none of the configured statuses occurs in the table at all (a typo, usually).
"""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg import sql

from cleanup.errors import TargetError
from cleanup.targets.base import TargetContext
from cleanup.targets.postgres import partitions
from cleanup.targets.postgres.catalog import TableInfo, examine
from cleanup.targets.postgres.db import (
    Connection,
    StopGuard,
    Stopped,
    connect,
    describe,
    require_dsn,
)
from cleanup.targets.postgres.settings import PostgresSettings
from cleanup.targets.postgres.sql import TID_RANGE_VERSION

# The count may scan a large table; it takes no row locks.
COUNT_STATEMENT_TIMEOUT = "10min"
# The status check runs only after a run that matched nothing. On a huge table where no
# row has a configured status it would read everything, so it gives up after this long.
STATUS_CHECK_TIMEOUT = "2s"
# The hint of the status warning: distinct values among this many rows, at most HINTS.
STATUS_SAMPLE_ROWS = 1000
STATUS_HINTS = 10


def preflight(s: PostgresSettings, stop: threading.Event) -> list[str]:
    """Every reason a run of this target could not delete, found without writing anything:
    the DSN variable, the server, the table and its kind, the columns, SELECT and DELETE."""
    try:
        require_dsn(s)
        conn = connect(s, stop)
    except TargetError as exc:
        return [str(exc)]
    except Stopped:
        return ["stopped before PostgreSQL answered"]
    try:
        with StopGuard(conn, stop), conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            found = examine(conn, s)
            if found.info is not None and found.info.partitioned:
                found.problems += _partition_problems(conn, s, found.info)
    except psycopg.Error as exc:
        return [
            f"PostgreSQL error while checking table {s.schema}.{s.table}: {describe(exc, s.dsn)}"
        ]
    finally:
        conn.close()
    return found.problems + ([found.delete_refused] if found.delete_refused else [])


def _partition_problems(conn: Connection, s: PostgresSettings, parent: TableInfo) -> list[str]:
    """A partitioned table's own problems: partitions this role may not delete from, and a
    layout `partitions = "drop"` cannot apply to."""
    try:
        problems = [
            leaf.info.delete_refused
            for leaf in partitions.leaves(conn, s, parent)
            if leaf.info.delete_refused
        ]
    except TargetError as exc:
        return [str(exc)]
    if s.partitions == "drop":
        problem = partitions.drop_problem(conn, s, parent, partitions.layout(conn, s, parent))
        problems += [problem] if problem else []
    return problems


def count_eligible(conn: Connection, query: sql.Composed, params: dict[str, object]) -> int:
    """`query` (a count of the eligible rows) in a read-only transaction."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (COUNT_STATEMENT_TIMEOUT,))
        row = conn.execute(query, params).fetchone()
    return int(str(row[0])) if row else 0


def predicted(ctx: TargetContext, info: TableInfo, count: int) -> None:
    """Dry run: `count` eligible rows, of which `matched` is what the cap lets through;
    the rest is the `backlog` a capped preview reports."""
    granted = ctx.budget.take(count) if count else 0
    if granted < count:
        ctx.past_cap(count - granted)
    ctx.counters.scanned += count
    ctx.counters.matched += granted
    if ctx.debug and granted:
        ctx.item_done(count=granted, table=info.qualified)


def refused(ctx: TargetContext, info: TableInfo, count: int) -> None:
    """A role that may count but not DELETE: the `count` eligible rows are matched and
    failed, in a real run (which deletes nothing) as in the dry run that predicts it.

    Nothing is deleted, so the cap takes no part: both runs end `partial` (or `ok`
    when no row is eligible yet, with a warning that the next ones will fail).
    """
    ctx.counters.scanned += count
    ctx.counters.matched += count
    ctx.counters.failed += count
    if count:
        ctx.item_failed(
            info.delete_refused, predicted=ctx.dry_run, table=info.qualified, count=count
        )
    else:
        ctx.warning(
            "delete_not_permitted",
            "no row is eligible now, but this role may not delete the rows that will be",
            table=info.qualified,
            error=info.delete_refused,
        )


def statuses_seen_instead(conn: Connection, s: PostgresSettings) -> list[str | None] | None:
    """When none of the configured statuses occurs in the table: a sample of the values
    that do (None stands for NULL). None when one occurs or the table has no rows.

    Raises psycopg.errors.QueryCanceled when the check takes longer than it may.
    """
    table = sql.Identifier(s.schema, s.table)
    column = sql.Identifier(s.status_column)
    exists = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {}::text = ANY(%s))").format(
        table, column
    )
    sample = sql.SQL(
        "SELECT DISTINCT v FROM (SELECT {}::text AS v FROM {} LIMIT %s) AS sample"
        " ORDER BY v NULLS LAST LIMIT %s"
    ).format(column, table)
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (STATUS_CHECK_TIMEOUT,))
        row = conn.execute(exists, (list(s.statuses),)).fetchone()
        if row and row[0]:
            return None
        rows = conn.execute(sample, (STATUS_SAMPLE_ROWS, STATUS_HINTS)).fetchall()
    seen = [None if value is None else str(value) for (value,) in rows]
    return seen or None


def warn_if_statuses_never_match(
    ctx: TargetContext, conn: Connection, s: PostgresSettings, info: TableInfo
) -> None:
    """After a run that matched nothing: a `target_warning` when no configured status
    occurs in the table, with some values that do as a hint. A check that cannot finish
    in time is skipped: it never fails the run."""
    if not s.status_column or not s.statuses:
        return
    try:
        seen = statuses_seen_instead(conn, s)
    except psycopg.Error as exc:
        if ctx.stop.is_set() or conn.broken:
            raise
        ctx.event(
            logging.DEBUG,
            "statuses_check_skipped",
            "the check for statuses that never match did not finish in time",
            table=info.qualified,
            error=describe(exc, s.dsn),
        )
        return
    if seen is None:
        return
    values = ", ".join("NULL" if v is None else repr(v) for v in seen)
    configured = ", ".join(repr(v) for v in s.statuses)
    ctx.warning(
        "statuses_never_match",
        f"none of the configured statuses ({configured}) occurs in column"
        f" {s.status_column!r} of table {info.qualified!r}, so this target can never delete"
        f" anything; values that occur include {values}",
        table=info.qualified,
        status_column=s.status_column,
        statuses=list(s.statuses),
        seen=seen,
    )


def warn_about(ctx: TargetContext, s: PostgresSettings, info: TableInfo, version: int) -> None:
    """Warnings about the table that hold for the whole run: no timestamp index, old server."""
    if not info.timestamp_indexed:
        ctx.event(
            logging.WARNING,
            "timestamp_not_indexed",
            "no index has the timestamp column as its leading column",
            table=info.qualified,
            column=s.timestamp_column,
        )
    if version < TID_RANGE_VERSION:
        how = (
            f"batches pick rows by the index on column {s.timestamp_column!r} instead"
            if info.timestamp_indexed
            else f"each batch scans the table: create an index on {s.timestamp_column!r}"
        )
        ctx.warning(
            "server_version_old",
            f"PostgreSQL {version // 10000} has no TID Range Scan (it came in 14): {how}",
            table=info.qualified,
            server_version_num=version,
        )
