"""One delete batch as a transaction, and its retries; the index path of old servers.

Shared by the ctid-range sweep (postgres/target.py) and `by_index`, the way
batches pick rows on a server older than 14, which has no TID Range Scan: the
oldest eligible rows by the timestamp index, `FOR UPDATE SKIP LOCKED`, each batch
starting where the last one ended so no batch reads the index entries of rows
already deleted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg import errors, sql

from cleanup.errors import TargetError
from cleanup.targets.base import TargetContext
from cleanup.targets.postgres import db as pg_db
from cleanup.targets.postgres.catalog import TableInfo
from cleanup.targets.postgres.db import (
    STATEMENT_TIMEOUT,
    Connection,
    Stopped,
    describe,
)
from cleanup.targets.postgres.settings import PostgresSettings
from cleanup.targets.postgres.sql import index_batch

_T = TypeVar("_T")

BATCH_RETRIES = 3
RETRY_BACKOFF_S = 0.5
# How long the fast path waits for a row lock before handing the range to SKIP LOCKED.
QUICK_LOCK_TIMEOUT = "50ms"
# The fast path cannot LIMIT its DELETE; this bounds how long it can hold row
# locks when a range holds far more rows than expected (it is then rolled back).
QUICK_STATEMENT_TIMEOUT = "150ms"
_SET_TIMEOUTS = (
    "SELECT set_config('lock_timeout', %(lock)s, %(local)s),"
    " set_config('statement_timeout', %(statement)s, %(local)s)"
)
_RETRYABLE = (
    errors.LockNotAvailable,  # lock_timeout
    errors.QueryCanceled,  # statement_timeout
    errors.DeadlockDetected,
    errors.SerializationFailure,
)


@dataclass
class Stats:
    transactions: int = 0
    retries: int = 0
    longest_s: float = 0.0


def retrying(
    ctx: TargetContext,
    s: PostgresSettings,
    stats: Stats,
    attempt: Callable[[], _T],
    quick: bool = False,
) -> _T:
    """Run one batch step, retried on timeouts; with `quick`, lock and statement
    timeouts propagate at once (the caller has another way round them)."""
    for n in range(BATCH_RETRIES + 1):
        if ctx.stop.is_set():
            raise Stopped
        try:
            return attempt()
        except _RETRYABLE as exc:
            if ctx.stop.is_set():
                raise Stopped from exc  # e.g. the stop guard cancelled the statement
            if quick and isinstance(exc, errors.LockNotAvailable | errors.QueryCanceled):
                raise
            stats.retries += 1
            if n == BATCH_RETRIES:
                raise TargetError(
                    f"delete batch on table {s.schema}.{s.table} failed"
                    f" {BATCH_RETRIES + 1} times: {describe(exc, s.dsn)}"
                ) from exc
            ctx.event(
                logging.WARNING,
                "batch_retry",
                "delete batch hit a timeout and will be retried",
                table=f"{s.schema}.{s.table}",
                attempt=n + 1,
                error=describe(exc, s.dsn),
            )
            if ctx.wait(RETRY_BACKOFF_S * 2**n):
                raise Stopped from exc
    raise AssertionError("unreachable")


def quick_session(conn: Connection) -> contextlib.AbstractContextManager[None]:
    """While open, the session's timeouts are the quick ones, so that a quick batch
    statement needs no round trip of its own to set them; they are restored after."""

    @contextlib.contextmanager
    def session() -> Iterator[None]:
        conn.execute(_SET_TIMEOUTS, _timeouts(QUICK_LOCK_TIMEOUT, QUICK_STATEMENT_TIMEOUT, False))
        try:
            yield
        finally:
            if not conn.closed and not conn.broken:
                conn.execute(_SET_TIMEOUTS, _timeouts(pg_db.LOCK_TIMEOUT, STATEMENT_TIMEOUT, False))

    return session()


def transaction(
    conn: Connection,
    query: sql.Composed,
    params: dict[str, object],
    stats: Stats,
    quick_limit: int | None,
) -> Callable[[], int]:
    """One batch statement in its own transaction, as a callable for `retrying`.

    With `quick_limit` (inside `quick_session`, whose timeouts need no statement of
    their own), it waits at most QUICK_LOCK_TIMEOUT for a lock and runs at most
    QUICK_STATEMENT_TIMEOUT (retry it with `quick=True`, so those errors reach the
    caller), and is rolled back when it deleted more than `quick_limit` rows (the
    returned count then exceeds the limit). Without, the transaction sets the
    session's usual timeouts for itself.
    """

    def run() -> int:
        began = time.monotonic()
        try:
            if quick_limit is not None:
                with conn.transaction():
                    deleted = max(conn.execute(query, params).rowcount, 0)
                    if deleted > quick_limit:
                        raise psycopg.Rollback()  # leaves the block, undoing this batch
            else:
                with conn.transaction():
                    usual_timeouts(conn)
                    deleted = max(conn.execute(query, params).rowcount, 0)
        finally:
            stats.transactions += 1
            stats.longest_s = max(stats.longest_s, time.monotonic() - began)
        return deleted

    return run


def usual_timeouts(conn: Connection) -> None:
    """The session's usual timeouts for the open transaction, inside `quick_session`."""
    conn.execute(_SET_TIMEOUTS, _timeouts(pg_db.LOCK_TIMEOUT, STATEMENT_TIMEOUT, True))


def _timeouts(lock: str, statement: str, local: bool) -> dict[str, object]:
    return {"lock": lock, "statement": statement, "local": local}


def by_index(
    ctx: TargetContext,
    conn: Connection,
    s: PostgresSettings,
    table: sql.Identifier,
    condition: sql.Composed,
    info: TableInfo,
    stats: Stats,
) -> None:
    """Batches of the oldest eligible rows by the timestamp index, for servers before 14.

    Each batch starts at the newest timestamp the previous one deleted (`>=`: rows of
    the same instant that it skipped are seen again). Rows another session holds are
    skipped and left for the next run; a role that cannot lock rows waits for them, at
    most lock_timeout, as the ctid path's table-lock case does.
    """
    query = index_batch(table, condition, s.timestamp_column, info.can_lock_rows)
    params: dict[str, object] = {
        "cutoff": ctx.cutoff,
        "statuses": list(s.statuses),
        "after": "-infinity",
    }
    counters = ctx.counters
    while not ctx.stop.is_set():
        granted = ctx.budget.take(s.batch_size)
        if not granted:
            break
        params["limit"] = granted

        def run() -> tuple[int, object]:
            began = time.monotonic()
            try:
                with conn.transaction():
                    row = conn.execute(query, params).fetchone()
            finally:
                stats.transactions += 1
                stats.longest_s = max(stats.longest_s, time.monotonic() - began)
            return (int(str(row[0])), row[1]) if row else (0, None)

        deleted, newest = retrying(ctx, s, stats, run)
        ctx.budget.give_back(granted - deleted)
        counters.scanned += deleted
        counters.matched += deleted
        counters.deleted += deleted
        if ctx.debug and deleted:
            ctx.item_done(count=deleted, table=info.qualified)
        if deleted < granted or newest is None:
            break
        params["after"] = newest
