"""The postgres target's SQL: the eligibility condition and the batch statements.

Identifiers are composed with psycopg.sql.Identifier, values are bound
parameters (%(cutoff)s, %(statuses)s, %(lo)s, %(hi)s, %(limit)s): nothing from
the configuration is ever interpolated into SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from cleanup.targets.postgres.settings import PostgresSettings


def eligible(s: PostgresSettings) -> sql.Composed:
    """The full eligibility condition; NULL timestamps and NULL statuses never match."""
    condition = sql.SQL("{} < %(cutoff)s").format(sql.Identifier(s.timestamp_column))
    if s.status_column:
        # ::text lets enum and varchar status columns compare with the configured strings.
        condition = sql.SQL("{} AND {}::text = ANY(%(statuses)s)").format(
            condition, sql.Identifier(s.status_column)
        )
    return sql.Composed([condition])


# PostgreSQL 14 brought the TID Range Scan that ctid-range batches rely on.
TID_RANGE_VERSION = 140000


@dataclass(frozen=True)
class Queries:
    """The statements of one batch over the block range [lo, hi)."""

    whole_range: sql.Composed  # fast path: every eligible row of the range
    skip_locked: sql.Composed  # at most `limit` rows, skipping rows others hold
    limited: sql.Composed  # at most `limit` rows, for a role that cannot lock rows
    pick: sql.Composed  # the ctids of at most `limit` eligible rows, locking nothing
    by_ctid: sql.Composed  # the picked rows (%(ctids)s) that are still eligible


def batch_queries(table: sql.Composable, cond: sql.Composable) -> Queries:
    upper = sql.SQL("ctid < %(hi)s::tid")
    return Queries(
        whole_range=sql.SQL(
            "DELETE FROM {table} WHERE ctid >= %(lo)s::tid AND {upper} AND {cond}"
        ).format(table=table, upper=upper, cond=cond),
        # The DELETE re-checks the condition: a row is deleted only if eligible then.
        skip_locked=sql.SQL(
            "WITH picked AS (SELECT ctid FROM {table}"
            " WHERE ctid >= %(lo)s::tid AND {upper} AND {cond}"
            " LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
            " DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked)) AND {cond}"
        ).format(table=table, upper=upper, cond=cond),
        # For a role that cannot lock rows (FOR UPDATE needs UPDATE on some column),
        # when a table lock blocks DELETE: it waits, for lock_timeout at most.
        limited=sql.SQL(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table}"
            " WHERE ctid >= %(lo)s::tid AND {upper} AND {cond} LIMIT %(limit)s)) AND {cond}"
        ).format(table=table, upper=upper, cond=cond),
        pick=sql.SQL(
            "SELECT ctid::text FROM {table}"
            " WHERE ctid >= %(lo)s::tid AND {upper} AND {cond} LIMIT %(limit)s"
        ).format(table=table, upper=upper, cond=cond),
        # A ctid picked earlier may hold another row by now: the condition is checked again.
        by_ctid=sql.SQL("DELETE FROM {table} WHERE ctid = ANY(%(ctids)s::tid[]) AND {cond}").format(
            table=table, cond=cond
        ),
    )


def index_batch(
    table: sql.Identifier, cond: sql.Composable, column: str, lock_rows: bool
) -> sql.Composed:
    """At most %(limit)s of the oldest eligible rows from %(after)s on, by the timestamp
    index; returns how many went and the newest timestamp among them."""
    lock = sql.SQL(" FOR UPDATE SKIP LOCKED" if lock_rows else "")
    return sql.SQL(
        "WITH picked AS (SELECT ctid FROM {table} WHERE {ts} >= %(after)s::timestamptz"
        " AND {cond} ORDER BY {ts} LIMIT %(limit)s{lock}),"
        " gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked))"
        " AND {cond} RETURNING {ts})"
        " SELECT count(*), max({ts})::timestamptz FROM gone"
    ).format(table=table, ts=sql.Identifier(column), cond=cond, lock=lock)
