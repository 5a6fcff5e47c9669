"""PostgreSQL target: delete finished job rows older than the cutoff, in short batches.

The table is walked in physical block ranges (`ctid >= '(b,0)' AND ctid <
'(e,0)'`, a TID Range Scan on PostgreSQL 14+). Each batch is one transaction
that locks at most `batch_size` eligible rows of its range with `FOR UPDATE
SKIP LOCKED` and deletes them by ctid, re-checking the full condition in the
DELETE itself. A ctid is a safe handle there: the row is locked by this very
transaction, so nobody can update or delete it before the commit, and the
re-check means only a row eligible at deletion time can go. Rows another
session holds are skipped, never waited on. Deletion never needs a primary key.

The range size adapts so a batch deletes about `batch_size` rows and stays
well under 100 ms; a full batch repeats its range (with a smaller span) so no
eligible row in it is left behind. Rows inserted during the run land in new
blocks and are fresh; a row updated during the run gets a new ctid and is
judged again by the re-checked condition, so neither can be deleted wrongly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg
from psycopg import errors, sql

from cleanup.config import PostgresSettings
from cleanup.errors import TargetError, TargetSkipped
from cleanup.targets.base import TargetContext
from cleanup.targets.postgres_db import (
    LOCK_TIMEOUT,
    STATEMENT_TIMEOUT,
    TableInfo,
    advisory_unlock,
    connect,
    describe,
    eligible,
    inspect_table,
    relation_blocks,
    try_advisory_lock,
)

Connection = psycopg.Connection[tuple[object, ...]]

BATCH_RETRIES = 3
RETRY_BACKOFF_S = 0.5
# A batch aims for this duration; the span shrinks when a batch takes longer.
TARGET_BATCH_S = 0.05
MAX_SPAN_BLOCKS = 16384  # 128 MiB of heap per batch at most
# The dry run's single count may scan a large table; it takes no row locks.
COUNT_STATEMENT_TIMEOUT = "10min"
_RETRYABLE = (
    errors.LockNotAvailable,  # lock_timeout
    errors.QueryCanceled,  # statement_timeout
    errors.DeadlockDetected,
    errors.SerializationFailure,
)


@dataclass
class _Stats:
    batches: int = 0
    retries: int = 0
    longest_s: float = 0.0


class PostgresTarget:
    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.table = sql.Identifier(settings.schema, settings.table)
        self.condition = eligible(settings)

    def _params(self, ctx: TargetContext) -> dict[str, object]:
        return {"cutoff": ctx.cutoff, "statuses": list(self.settings.statuses)}

    def run(self, ctx: TargetContext) -> None:
        s = self.settings
        conn = connect(s.dsn, ctx.stop)
        try:
            if not try_advisory_lock(conn, s):
                ctx.event(
                    logging.INFO,
                    "lock_not_acquired",
                    "another session holds the cleanup lock of this table",
                    schema=s.schema,
                    table=s.table,
                )
                raise TargetSkipped(
                    f"another session holds the advisory lock of table {s.schema}.{s.table}"
                )
            try:
                info = inspect_table(conn, s, ctx.dry_run)
                if not info.timestamp_indexed:
                    ctx.event(
                        logging.WARNING,
                        "timestamp_not_indexed",
                        "no index has the timestamp column as its leading column",
                        table=info.qualified,
                        column=s.timestamp_column,
                    )
                if ctx.dry_run:
                    self._count(ctx, conn, info)
                else:
                    self._delete(ctx, conn, info)
            finally:
                if not conn.closed and not conn.broken:
                    advisory_unlock(conn, s)
        except psycopg.Error as exc:
            raise TargetError(
                f"PostgreSQL error on table {s.schema}.{s.table}: {describe(exc, s.dsn)}"
            ) from exc
        finally:
            conn.close()

    def _count(self, ctx: TargetContext, conn: Connection, info: TableInfo) -> None:
        """Dry run: one count of eligible rows, in a read-only transaction."""
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.table, self.condition)
        with conn.transaction():
            conn.execute("SET LOCAL transaction_read_only = on")
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true)", (COUNT_STATEMENT_TIMEOUT,)
            )
            row = conn.execute(query, self._params(ctx)).fetchone()
        count = int(str(row[0])) if row else 0
        granted = ctx.budget.take(count) if count else 0
        ctx.counters.scanned += count
        ctx.counters.matched += granted
        if ctx.debug and granted:
            ctx.item_done(count=granted, table=info.qualified)

    def _delete(self, ctx: TargetContext, conn: Connection, info: TableInfo) -> None:
        s = self.settings
        template = sql.SQL(
            "WITH picked AS ("
            "SELECT ctid FROM {table} WHERE ctid >= %(lo)s::tid AND ({upper}) AND {cond}"
            " LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
            " DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked)) AND {cond}"
        )
        bounded = template.format(
            table=self.table, cond=self.condition, upper=sql.SQL("ctid < %(hi)s::tid")
        )
        # The last range is open-ended so rows moved past the end by updates are seen too.
        open_ended = template.format(table=self.table, cond=self.condition, upper=sql.SQL("true"))
        params = self._params(ctx)
        end = relation_blocks(conn, info.oid)
        # reltuples is -1 before the first ANALYZE: guess a typical row density then.
        known = info.relpages > 0 and info.reltuples > 0
        rows_per_block = info.reltuples / info.relpages if known else 50.0
        span = max(1, min(MAX_SPAN_BLOCKS, int(s.batch_size / max(rows_per_block, 1.0))))
        start = 0
        stats = _Stats()
        take, give_back, counters = ctx.budget.take, ctx.budget.give_back, ctx.counters
        while not ctx.stop.is_set():
            granted = take(s.batch_size)
            if not granted:
                break
            last = start + span >= end
            params |= {"lo": f"({start},0)", "hi": f"({start + span},0)", "limit": granted}
            query = open_ended if last else bounded
            deleted, elapsed = self._batch(ctx, conn, query, params, stats)
            give_back(granted - deleted)
            counters.scanned += deleted
            counters.matched += deleted
            counters.deleted += deleted
            if ctx.debug and deleted:
                ctx.item_done(
                    count=deleted,
                    table=info.qualified,
                    first_block=start,
                    blocks=span,
                    transaction_ms=round(elapsed * 1000, 2),
                )
            if deleted >= granted:
                # The LIMIT cut the range short: it may hold more, so go over it again.
                span = max(1, span // 2)
                continue
            if last:
                break
            start += span
            ratio = min(2.0, max(0.5, 0.9 * s.batch_size / deleted)) if deleted else 2.0
            if elapsed > TARGET_BATCH_S:
                ratio = min(ratio, TARGET_BATCH_S / elapsed)
            span = max(1, min(MAX_SPAN_BLOCKS, int(span * ratio)))
        ctx.event(
            logging.INFO,
            "batches_finished",
            "delete batches finished",
            table=info.qualified,
            batches=stats.batches,
            retries=stats.retries,
            longest_transaction_ms=round(stats.longest_s * 1000, 2),
            lock_timeout=LOCK_TIMEOUT,
            statement_timeout=STATEMENT_TIMEOUT,
        )

    def _batch(
        self,
        ctx: TargetContext,
        conn: Connection,
        query: sql.Composed,
        params: dict[str, object],
        stats: _Stats,
    ) -> tuple[int, float]:
        """One batch in its own transaction; retried on lock/statement timeouts."""
        s = self.settings
        for attempt in range(BATCH_RETRIES + 1):
            began = time.monotonic()
            try:
                with conn.transaction():
                    deleted = conn.execute(query, params).rowcount
            except _RETRYABLE as exc:
                stats.retries += 1
                if attempt == BATCH_RETRIES:
                    raise TargetError(
                        f"delete batch on table {s.schema}.{s.table} failed"
                        f" {BATCH_RETRIES + 1} times: {describe(exc, s.dsn)}"
                    ) from exc
                ctx.event(
                    logging.WARNING,
                    "batch_retry",
                    "delete batch hit a timeout and will be retried",
                    table=f"{s.schema}.{s.table}",
                    attempt=attempt + 1,
                    error=describe(exc, s.dsn),
                )
                time.sleep(RETRY_BACKOFF_S * 2**attempt)
                continue
            elapsed = time.monotonic() - began
            stats.batches += 1
            stats.longest_s = max(stats.longest_s, elapsed)
            return max(deleted, 0), elapsed
        raise AssertionError("unreachable")


def create(settings: PostgresSettings) -> PostgresTarget:
    return PostgresTarget(settings)
