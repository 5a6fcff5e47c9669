"""`partitions = "drop"`: old partitions detached and dropped whole, as pg_partman does.

A leaf goes whole when its RANGE upper bound (on the timestamp column) is at or
before the cutoff, it is not the default partition, this role owns it and the
parent, and no row in it is outside the rules. Everything else is swept by rows.

How (docs/postgres.md, "Partitioned tables"):
- Without a default partition, on PostgreSQL 14+: a read-only look (no ineligible
  row, the count), then `DETACH PARTITION ... CONCURRENTLY`, whose locks do not
  block the application's reads and writes. The detached table is then locked,
  checked and counted again: a row outside the rules that appeared meanwhile puts
  the partition back (ATTACH) and it is swept by rows; else it is dropped.
- Otherwise (a default partition forbids CONCURRENTLY): one transaction that locks
  the partition against writes, checks and counts it, then DETACH (an ACCESS
  EXCLUSIVE lock on the parent, for milliseconds) and DROP.
Every lock wait is bounded by the session's lock_timeout, so an application insert
queued behind it waits no longer than that; a drop that cannot get its locks in
DROP_ATTEMPTS tries leaves the partition to the row sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import errors, sql

from cleanup.errors import TargetError
from cleanup.targets.base import TargetContext
from cleanup.targets.postgres.checks import COUNT_STATEMENT_TIMEOUT
from cleanup.targets.postgres.db import STATEMENT_TIMEOUT, Connection, describe
from cleanup.targets.postgres.partitions import Layout, Leaf, ends_by
from cleanup.targets.postgres.settings import PostgresSettings

DROP_ATTEMPTS = 2
DROP_BACKOFF_S = 0.5
# PostgreSQL 14 brought DETACH PARTITION ... CONCURRENTLY.
CONCURRENT_DETACH_VERSION = 140000
_LOCK_ERRORS = (
    errors.LockNotAvailable,
    errors.QueryCanceled,
    errors.DeadlockDetected,
    errors.SerializationFailure,
)


class _Changed(Exception):
    """A row outside the rules appeared, or more rows than the cap leaves."""


@dataclass
class Dropper:
    ctx: TargetContext
    conn: Connection
    s: PostgresSettings
    parent: sql.Identifier
    layout: Layout
    condition: sql.Composed
    params: dict[str, object]
    server_version: int

    def candidate(self, leaf: Leaf) -> bool:
        """Whether the leaf's range and privileges allow dropping it whole."""
        if leaf.is_default or leaf.info.delete_refused:
            return False
        if not ends_by(self.conn, leaf, self.ctx.cutoff):
            return False
        if not leaf.may_drop:
            self.ctx.warning(
                "partition_drop_not_permitted",
                "this role does not own the partition and its parent, so it may not detach"
                " and drop it: its rows are deleted in batches instead",
                partition=leaf.info.qualified,
            )
            return False
        return True

    def predict(self, leaf: Leaf) -> int | None:
        """Dry run: the rows the drop would remove, or None when it would sweep by rows."""
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION READ ONLY")
            rows = self._survey(leaf)
        if rows is not None:
            self._log(leaf, rows)
        return rows

    def drop(self, leaf: Leaf) -> int | None:
        """Detach and drop the leaf: the rows it held, or None to sweep it by rows."""
        concurrent = (
            self.server_version >= CONCURRENT_DETACH_VERSION and not self.layout.has_default
        )
        for attempt in range(DROP_ATTEMPTS):
            if self.ctx.stop.is_set():
                return None
            try:
                rows = self._concurrent(leaf) if concurrent else self._in_one_transaction(leaf)
            except _Changed:
                return None
            except _LOCK_ERRORS as exc:
                if self.ctx.stop.is_set():
                    raise
                if attempt + 1 < DROP_ATTEMPTS and not self.ctx.wait(DROP_BACKOFF_S):
                    continue
                self._fallback(leaf, "partition_drop_timed_out", exc)
                return None
            except psycopg.errors.DatabaseError as exc:
                if self.ctx.stop.is_set() or self.conn.broken:
                    raise
                self._fallback(leaf, "partition_drop_failed", exc)
                return None
            if rows is not None:
                counters = self.ctx.counters
                counters.scanned += rows
                counters.matched += rows
                counters.deleted += rows
                self._log(leaf, rows)
            return rows
        return None

    def _survey(self, leaf: Leaf) -> int | None:
        """The leaf's row count, or None when a row outside the rules is in it.

        The check stops at the first such row; only a leaf without one is counted.
        """
        self.conn.execute(
            "SELECT set_config('statement_timeout', %s, true)", (COUNT_STATEMENT_TIMEOUT,)
        )
        outside = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE ({}) IS NOT TRUE)").format(
            leaf.ident, self.condition
        )
        row = self.conn.execute(outside, self.params).fetchone()
        if row is None or row[0]:
            return None
        counted = self.conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(leaf.ident)
        ).fetchone()
        return int(str(counted[0])) if counted else 0

    def _grant(self, rows: int) -> None:
        """Take `rows` deletions from the cap, all or none."""
        granted = self.ctx.budget.take(rows)
        if granted < rows:
            self.ctx.budget.give_back(granted)
            raise _Changed  # the row sweep deletes up to the cap, exactly

    def _in_one_transaction(self, leaf: Leaf) -> int | None:
        with self.conn.transaction():
            # SHARE: the application can still read the partition, not change it, so the
            # count stays exact until the drop commits.
            return self._count_and_drop(
                leaf,
                "SHARE",
                sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(self.parent, leaf.ident),
            )

    def _concurrent(self, leaf: Leaf) -> int | None:
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION READ ONLY")
            expected = self._survey(leaf)
        if expected is None:
            raise _Changed
        detach = sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(self.parent, leaf.ident)
        try:
            self.conn.execute(detach + sql.SQL(" CONCURRENTLY"))
        except _LOCK_ERRORS:
            if self._detach_pending(leaf):
                # Its second step was cut: only FINALIZE completes it (nothing can undo it).
                self._finalize(leaf, detach)
            else:
                raise
        try:
            with self.conn.transaction():
                # Detached: only sessions naming it directly can still reach it.
                return self._count_and_drop(leaf, "ACCESS EXCLUSIVE")
        except (_Changed, psycopg.Error):
            self._attach_again(leaf)
            raise

    def _count_and_drop(self, leaf: Leaf, mode: str, *before_drop: sql.Composed) -> int:
        """In the caller's transaction: lock the leaf in `mode`, count it again (a row outside
        the rules raises _Changed), take its rows from the budget, then run `before_drop`
        and DROP it; the rows go back to the budget when a statement fails."""
        self.conn.execute(sql.SQL("LOCK TABLE {} IN " + mode + " MODE").format(leaf.ident))
        rows = self._survey(leaf)
        if rows is None:
            raise _Changed
        self._grant(rows)
        try:
            self._restore_statement_timeout()
            for statement in before_drop:
                self.conn.execute(statement)
            self.conn.execute(sql.SQL("DROP TABLE {}").format(leaf.ident))
        except BaseException:
            self.ctx.budget.give_back(rows)
            raise
        return rows

    def _restore_statement_timeout(self) -> None:
        """Back to the session's bound for the DDL, after the long scan's."""
        self.conn.execute("SELECT set_config('statement_timeout', %s, true)", (STATEMENT_TIMEOUT,))

    def _detach_pending(self, leaf: Leaf) -> bool:
        row = self.conn.execute(
            "SELECT inhdetachpending FROM pg_catalog.pg_inherits WHERE inhrelid = %s",
            (leaf.info.oid,),
        ).fetchone()
        return bool(row and row[0])

    def _finalize(self, leaf: Leaf, detach: sql.Composed) -> None:
        for attempt in range(DROP_ATTEMPTS + 1):
            try:
                self.conn.execute(detach + sql.SQL(" FINALIZE"))
                return
            except _LOCK_ERRORS as exc:
                if attempt == DROP_ATTEMPTS or self.ctx.wait(DROP_BACKOFF_S):
                    raise TargetError(
                        f"partition {leaf.info.qualified!r} is left half-detached"
                        f" (DETACH ... CONCURRENTLY was interrupted): finish it with ALTER"
                        f" TABLE {self.s.schema}.{self.s.table} DETACH PARTITION"
                        f" {leaf.info.qualified} FINALIZE ({describe(exc, self.s.dsn)})"
                    ) from exc

    def _attach_again(self, leaf: Leaf) -> None:
        """Put a detached leaf back where it was: its rows must not vanish from the table."""
        attach = sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
            self.parent, leaf.ident, sql.SQL(leaf.bound)
        )
        last: psycopg.Error | None = None
        for _ in range(DROP_ATTEMPTS + 1):
            try:
                self.conn.execute(attach)
                return
            except psycopg.Error as exc:
                last = exc
                if self.conn.broken:
                    break
                self.ctx.wait(DROP_BACKOFF_S)
        raise TargetError(
            f"partition {leaf.info.qualified!r} was detached from table"
            f" {self.s.schema}.{self.s.table} and could not be attached again: attach it"
            f" with ALTER TABLE {self.s.schema}.{self.s.table} ATTACH PARTITION"
            f" {leaf.info.qualified} {leaf.bound}"
            + (f" ({describe(last, self.s.dsn)})" if last else "")
        ) from last

    def _fallback(self, leaf: Leaf, code: str, exc: BaseException) -> None:
        self.ctx.warning(
            code,
            "the partition could not be detached and dropped: its rows are deleted in"
            " batches instead",
            partition=leaf.info.qualified,
            error=describe(exc, self.s.dsn),
        )

    def _log(self, leaf: Leaf, rows: int) -> None:
        if self.ctx.dry_run:
            message, event = "partition would be detached and dropped", "partition_would_drop"
        else:
            message, event = "partition detached and dropped", "partition_dropped"
        self.ctx.event(logging.INFO, event, message, partition=leaf.info.qualified, rows=rows)
