"""PostgreSQL target: delete finished job rows older than the cutoff, in short batches.

The table is walked in physical block ranges (`ctid >= '(b,0)' AND ctid <
'(e,0)'`, a TID Range Scan on PostgreSQL 14+), each range sized to hold a bit
less than `batch_size` eligible rows. Each batch is one transaction, and the
full eligibility condition is evaluated by the DELETE itself, so a row goes
only if it is eligible when it is deleted: rows inserted during the run land
in new blocks (and are fresh), rows updated during the run are judged again.

Fast path: one `DELETE ... WHERE ctid in range AND condition`, as cheap per row
as a plain DELETE. It waits at most QUICK_LOCK_TIMEOUT for a row lock, runs at most
QUICK_STATEMENT_TIMEOUT, and is rolled back if the range held more than the batch
may delete. Then the range goes to
the limited path: at most `limit` rows picked with `FOR UPDATE SKIP LOCKED`
(rows others hold are skipped, never waited on) and deleted by ctid, a safe
handle there because this very transaction holds their row locks. A role
that may not lock rows picks them without a lock and deletes them in halves
that give way to row locks (`_around_locked_rows`). A full limited batch
repeats its range with a smaller span, so nothing is left behind. Deletion
never needs a primary key.

A partitioned table is swept leaf by leaf (postgres_partitions), old leaves
possibly dropped whole (postgres_drop); below PostgreSQL 14, batches go by the
timestamp index (postgres_batches.by_index). The dry run counts instead
(postgres_checks), and so does a run whose role may SELECT but not DELETE. After a stop request no new statement starts, back-off
waits are cut short, and a statement that does not return is cancelled, then
its socket cut (postgres_db.StopGuard).
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg import errors, sql

from cleanup.errors import TargetError, TargetSkipped
from cleanup.targets.base import TargetContext
from cleanup.targets.postgres import checks as postgres_checks
from cleanup.targets.postgres import partitions
from cleanup.targets.postgres.batches import (
    Stats,
    by_index,
    quick_session,
    retrying,
    transaction,
    usual_timeouts,
)
from cleanup.targets.postgres.catalog import (
    TableInfo,
    inspect_table,
    relation_blocks,
    table_lock_conflicts,
)
from cleanup.targets.postgres.db import (
    LOCK_TIMEOUT,
    STATEMENT_TIMEOUT,
    StopGuard,
    Stopped,
    advisory_unlock,
    connect,
    describe,
    require_dsn,
    server_version,
    try_advisory_lock,
)
from cleanup.targets.postgres.drop import Dropper
from cleanup.targets.postgres.settings import PostgresSettings
from cleanup.targets.postgres.sql import TID_RANGE_VERSION, Queries, batch_queries, eligible

Connection = psycopg.Connection[tuple[object, ...]]
# A batch aims for this duration, half the 50 ms a transaction may hold its row locks:
# a range grows only as far as its predicted time stays within it.
TARGET_BATCH_S = 0.025
# A range is sized to hold this share of batch_size eligible rows (the fast path rarely
# finds more than a batch may take).
FILL = 0.8
MAX_BLOCK = 2**32 - 1  # past the last possible block number: an open-ended range
MAX_SPAN_BLOCKS = 16384  # 128 MiB of heap per batch at most
# How many quick lock waits one limited batch may spend isolating rows that other
# sessions hold, when the role cannot SKIP LOCKED (each costs QUICK_LOCK_TIMEOUT).
MAX_LOCK_PROBES = 64


class _TableLocked(Exception):
    """Another session holds or awaits a table lock that blocks DELETE."""


class PostgresTarget:
    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.table = sql.Identifier(settings.schema, settings.table)
        self.condition = eligible(settings)

    def _params(self, ctx: TargetContext) -> dict[str, object]:
        return {"cutoff": ctx.cutoff, "statuses": list(self.settings.statuses)}

    def preflight(self, ctx: TargetContext) -> list[str]:
        return postgres_checks.preflight(self.settings, ctx.stop)

    def run(self, ctx: TargetContext) -> None:
        s = self.settings
        require_dsn(s)
        try:
            conn = connect(s, ctx.stop)
        except Stopped:
            return  # stopped before a session was up: interrupted, not failed
        try:
            with StopGuard(conn, ctx.stop):
                self._locked(ctx, conn)
        except Stopped:
            return
        except psycopg.Error as exc:
            if ctx.stop.is_set():
                return  # the statement in flight was cancelled or cut by the stop
            raise TargetError(
                f"PostgreSQL error on table {s.schema}.{s.table}: {describe(exc, s.dsn)}"
            ) from exc
        finally:
            conn.close()

    def _locked(self, ctx: TargetContext, conn: Connection) -> None:
        """The run proper, under the table's advisory lock."""
        s = self.settings
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
            info = inspect_table(conn, s)
            version = server_version(conn)
            postgres_checks.warn_about(ctx, s, info, version)
            stats = Stats()
            if info.partitioned:
                self._partitioned(ctx, conn, info, version, stats)
            else:
                self._relation(ctx, conn, info, self.table, version, stats)
            if stats.transactions:
                ctx.event(
                    logging.INFO,
                    "batches_finished",
                    "delete batches finished",
                    table=info.qualified,
                    transactions=stats.transactions,
                    retries=stats.retries,
                    longest_transaction_ms=round(stats.longest_s * 1000, 2),
                    lock_timeout=LOCK_TIMEOUT,
                    statement_timeout=STATEMENT_TIMEOUT,
                )
            if not ctx.counters.matched and not ctx.stop.is_set():
                postgres_checks.warn_if_statuses_never_match(ctx, conn, s, info)
        finally:
            if not conn.closed and not conn.broken:
                advisory_unlock(conn, s)

    def _partitioned(
        self, ctx: TargetContext, conn: Connection, info: TableInfo, version: int, stats: Stats
    ) -> None:
        """Each leaf partition in turn, whole (drop mode) or by rows, as one target."""
        s = self.settings
        dropper: Dropper | None = None
        if s.partitions == "drop":
            shape = partitions.layout(conn, s, info)
            problem = partitions.drop_problem(conn, s, info, shape)
            if problem:
                raise TargetError(problem)
            if not shape.keyed_by_timestamp:
                ctx.warning(
                    "partition_key_not_timestamp",
                    f"the partition key of table {info.qualified!r} is not the timestamp"
                    f" column {s.timestamp_column!r} alone, so no partition can be told old"
                    " by its bounds: every partition is deleted in batches",
                    table=info.qualified,
                )
            else:
                dropper = Dropper(
                    ctx, conn, s, self.table, shape, self.condition, self._params(ctx), version
                )
        for leaf in partitions.leaves(conn, s, info):
            if ctx.stop.is_set() or (ctx.budget.reached and not ctx.dry_run):
                return
            if dropper is not None and dropper.candidate(leaf):
                if ctx.dry_run:
                    rows = dropper.predict(leaf)
                    if rows is not None:
                        postgres_checks.predicted(ctx, leaf.info, rows)
                        continue
                elif dropper.drop(leaf) is not None:
                    continue
            self._relation(ctx, conn, leaf.info, leaf.ident, version, stats)

    def _relation(
        self,
        ctx: TargetContext,
        conn: Connection,
        info: TableInfo,
        table: sql.Identifier,
        version: int,
        stats: Stats,
    ) -> None:
        """One plain table or leaf partition: counted (dry run, no DELETE) or deleted."""
        if info.delete_refused or ctx.dry_run:
            query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, self.condition)
            count = postgres_checks.count_eligible(conn, query, self._params(ctx))
            if info.delete_refused:
                postgres_checks.refused(ctx, info, count)
            else:
                postgres_checks.predicted(ctx, info, count)
        elif version < TID_RANGE_VERSION and info.timestamp_indexed:
            by_index(ctx, conn, self.settings, table, self.condition, info, stats)
        else:
            self._delete(ctx, conn, info, table, stats)

    def _queries(self, table: sql.Identifier) -> Queries:
        return batch_queries(table, self.condition)

    def _delete(
        self,
        ctx: TargetContext,
        conn: Connection,
        info: TableInfo,
        table: sql.Identifier,
        stats: Stats,
    ) -> None:
        s = self.settings
        queries = self._queries(table)
        end = relation_blocks(conn, info.oid)
        # reltuples is -1 before the first ANALYZE: guess a typical row density then.
        known = info.relpages > 0 and info.reltuples > 0
        rows_per_block = info.reltuples / info.relpages if known else 50.0
        span = max(1, min(MAX_SPAN_BLOCKS, int(s.batch_size / max(rows_per_block, 1.0))))
        with quick_session(conn):
            self._ranges(ctx, conn, queries, info, stats, span, end)

    def _ranges(
        self,
        ctx: TargetContext,
        conn: Connection,
        queries: Queries,
        info: TableInfo,
        stats: Stats,
        span: int,
        end: int,
    ) -> None:
        s, params, start = self.settings, self._params(ctx), 0
        take, give_back, counters = ctx.budget.take, ctx.budget.give_back, ctx.counters
        while not ctx.stop.is_set():
            granted = take(s.batch_size)
            if not granted:
                break
            last = start + span >= end
            # The last range is open-ended (hi past any block) so rows that updates
            # moved beyond the end are seen too.
            hi = MAX_BLOCK if last else start + span
            params |= {"lo": f"({start},0)", "hi": f"({hi},0)", "limit": granted}
            began = time.monotonic()
            deleted, more = self._batch(ctx, conn, queries, params, info, stats)
            elapsed = time.monotonic() - began
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
                    batch_ms=round(elapsed * 1000, 2),
                )
            if more:
                # The LIMIT cut the range short: it may hold more, so go over it again,
                # with a span cut in proportion when the batch was slow.
                span = max(1, int(span * min(0.5, TARGET_BATCH_S / max(elapsed, 1e-6))))
                continue
            if last:
                break
            start += span
            ratio = min(2.0, max(0.5, FILL * s.batch_size / deleted)) if deleted else 2.0
            ratio = min(ratio, TARGET_BATCH_S / max(elapsed, 1e-6))
            span = max(1, min(MAX_SPAN_BLOCKS, int(span * ratio)))

    def _batch(
        self,
        ctx: TargetContext,
        conn: Connection,
        queries: Queries,
        params: dict[str, object],
        info: TableInfo,
        stats: Stats,
    ) -> tuple[int, bool]:
        """Delete one range's eligible rows, at most params["limit"].

        Returns the rows deleted and whether the range may hold more (the limit cut it short).
        """
        limit = params["limit"]
        assert isinstance(limit, int)
        if limit == self.settings.batch_size:
            # Fast path: one DELETE over the whole range, as cheap per row as a plain
            # DELETE. It gives way at once to a row lock (QUICK_LOCK_TIMEOUT) or a long
            # statement (QUICK_STATEMENT_TIMEOUT), and is rolled back if the range held
            # more rows than the batch may delete; the limited path then takes over.
            try:
                attempt = transaction(conn, queries.whole_range, params, stats, limit)
                deleted = retrying(ctx, self.settings, stats, attempt, quick=True)
            except (errors.LockNotAvailable, errors.QueryCanceled):
                pass
            else:
                if deleted <= limit:
                    return deleted, False
        if not info.can_lock_rows:
            return self._around_locked_rows(ctx, conn, queries, params, info, stats)
        attempt = transaction(conn, queries.skip_locked, params, stats, None)
        deleted = retrying(ctx, self.settings, stats, attempt)
        return deleted, deleted >= limit

    def _around_locked_rows(
        self,
        ctx: TargetContext,
        conn: Connection,
        queries: Queries,
        params: dict[str, object],
        info: TableInfo,
        stats: Stats,
    ) -> tuple[int, bool]:
        """The limited path for a role that cannot lock rows, so cannot SKIP LOCKED.

        PostgreSQL allows FOR UPDATE only with UPDATE on some column. Instead the range's
        eligible rows are picked by ctid, locking nothing, and deleted in halves that wait
        at most QUICK_LOCK_TIMEOUT: a half that meets a row lock is split again, down to
        the one row another session holds, which is left for the next run. A table lock
        that blocks DELETE is not split around: that batch waits and retries as usual.
        """
        limit = params["limit"]
        assert isinstance(limit, int)

        def pick() -> list[str]:
            with conn.transaction():
                usual_timeouts(conn)
                return [str(row[0]) for row in conn.execute(queries.pick, params)]

        picked = retrying(ctx, self.settings, stats, pick)
        probes = 0

        def delete(ctids: list[str]) -> int:
            nonlocal probes
            chunk = params | {"ctids": ctids}
            attempt = transaction(conn, queries.by_ctid, chunk, stats, len(ctids))
            try:
                return retrying(ctx, self.settings, stats, attempt, quick=True)
            except (errors.LockNotAvailable, errors.QueryCanceled):
                probes += 1
                if probes == 1 and table_lock_conflicts(conn, info.oid):
                    raise _TableLocked from None
                if len(ctids) == 1 or probes > MAX_LOCK_PROBES:
                    return 0  # held by another session: left for the next run
                half = len(ctids) // 2
                return delete(ctids[:half]) + delete(ctids[half:])

        try:
            deleted = delete(picked) if picked else 0
        except _TableLocked:
            attempt = transaction(conn, queries.limited, params, stats, None)
            deleted = retrying(ctx, self.settings, stats, attempt)
            return deleted, deleted >= limit
        # Go over the range again only when the pick was cut by the limit and this pass
        # got somewhere: a range of nothing but locked rows is left for the next run.
        return deleted, len(picked) >= limit and deleted > 0 and probes <= MAX_LOCK_PROBES


def create(settings: PostgresSettings) -> PostgresTarget:
    return PostgresTarget(settings)
