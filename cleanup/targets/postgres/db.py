"""PostgreSQL session plumbing for the postgres target: connect, redact, lock, inspect.

Imported only by cleanup.targets.postgres, so psycopg loads only when a
postgres target runs.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import psycopg

from cleanup.errors import TargetError
from cleanup.redact import REDACTED
from cleanup.targets.postgres.settings import PostgresSettings

CONNECT_TIMEOUT_S = 5
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF_S = 1.0
# Short enough that the application never queues behind us for long, long enough
# that a busy table does not fail every batch.
LOCK_TIMEOUT = "2s"
STATEMENT_TIMEOUT = "30s"
# If this process hangs inside a batch, the server ends the transaction and frees its locks.
IDLE_IN_TRANSACTION_TIMEOUT = "60s"
APPLICATION_NAME = "cleanup"

_TIMESTAMP_TYPES = {1184: "timestamptz", 1114: "timestamp", 1082: "date"}
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _passwords(dsn: str) -> set[str]:
    found: set[str] = set()
    if "://" in dsn:
        try:
            password = urlsplit(dsn.strip()).password
        except ValueError:
            password = None
        if password:
            found |= {password, unquote(password)}
    for match in _KV_PASSWORD.finditer(dsn):
        value = match.group(2)
        found |= {value, value.strip("'")}
    # A very short password would turn every message into noise if replaced everywhere;
    # the patterns below still hide it where libpq echoes a conninfo.
    return {p for p in found if len(p) >= 3}


def redact(text: str, dsn: str) -> str:
    """`text` with the DSN's password removed, whatever shape libpq echoed it in."""
    for password in sorted(_passwords(dsn), key=len, reverse=True):
        text = text.replace(password, REDACTED)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
    return _KV_PASSWORD.sub(rf"\1{REDACTED}", text)


def describe(exc: BaseException, dsn: str) -> str:
    """A one-line, password-free description of a database error."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return redact(message, dsn)


def connect(dsn: str, stop: threading.Event) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit session with our timeouts, retried with back-off on connection errors."""
    last: psycopg.Error | None = None
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            conn = psycopg.connect(
                dsn,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=APPLICATION_NAME,
            )
        except psycopg.OperationalError as exc:
            last = exc
            if attempt + 1 < CONNECT_ATTEMPTS and stop.wait(CONNECT_BACKOFF_S * 2**attempt):
                break
            continue
        except psycopg.Error as exc:  # a malformed DSN: retrying cannot help
            raise TargetError(f"invalid PostgreSQL DSN: {describe(exc, dsn)}") from exc
        try:
            # set_config, not SET: values travel as parameters. TimeZone UTC makes a
            # `timestamp without time zone` column compare as UTC against the cutoff.
            # synchronous_commit off: a batch's commit does not wait for the WAL flush.
            # A server crash may forget the last batches (those rows go next run);
            # it never corrupts anything, and it keeps many small batches cheap.
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false),"
                " set_config('statement_timeout', %s, false),"
                " set_config('idle_in_transaction_session_timeout', %s, false),"
                " set_config('synchronous_commit', 'off', false),"
                " set_config('TimeZone', 'UTC', false)",
                (LOCK_TIMEOUT, STATEMENT_TIMEOUT, IDLE_IN_TRANSACTION_TIMEOUT),
            )
        except psycopg.Error as exc:
            conn.close()
            message = describe(exc, dsn)
            raise TargetError(f"cannot set up the PostgreSQL session: {message}") from exc
        return conn
    assert last is not None
    raise TargetError(
        f"cannot connect to PostgreSQL after {CONNECT_ATTEMPTS} attempts: {describe(last, dsn)}"
    ) from last


LOCK_KEY = "hashtext('cleanup:' || %s::text || '.' || %s::text)"


def try_advisory_lock(conn: psycopg.Connection[tuple[object, ...]], s: PostgresSettings) -> bool:
    row = conn.execute(
        f"SELECT pg_try_advisory_lock({LOCK_KEY})",
        (s.schema, s.table),
    ).fetchone()
    return bool(row and row[0])


def advisory_unlock(conn: psycopg.Connection[tuple[object, ...]], s: PostgresSettings) -> None:
    conn.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})", (s.schema, s.table))


@dataclass(frozen=True)
class TableInfo:
    oid: int
    qualified: str  # schema.table as configured, for messages
    relpages: int
    reltuples: float
    timestamp_type: str
    timestamp_indexed: bool
    # PostgreSQL allows FOR UPDATE only with UPDATE on at least one column.
    can_lock_rows: bool


def inspect_table(
    conn: psycopg.Connection[tuple[object, ...]], s: PostgresSettings, dry_run: bool
) -> TableInfo:
    """Check the table and columns exist with usable types; TargetError naming what is wrong."""
    qualified = f"{s.schema}.{s.table}"
    row = conn.execute(
        "SELECT c.oid::bigint, c.relkind::text, c.relpages, c.reltuples::float8,"
        " has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'DELETE'),"
        " has_any_column_privilege(c.oid, 'UPDATE')"
        " FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (s.schema, s.table),
    ).fetchone()
    if row is None:
        raise TargetError(f"table {qualified!r} does not exist")
    oid, relpages, reltuples = _int(row[0]), _int(row[2]), float(str(row[3]))
    relkind, can_select, can_delete, can_lock = row[1], row[4], row[5], row[6]
    if relkind == "p":
        raise TargetError(f"table {qualified!r} is partitioned: configure one target per partition")
    if relkind != "r":
        raise TargetError(f"{qualified!r} is not a table (relkind {relkind!r})")
    if not can_select:
        raise TargetError(f"the database role lacks SELECT on table {qualified!r}")
    if not dry_run and not can_delete:
        raise TargetError(f"the database role lacks DELETE on table {qualified!r}")
    wanted = [s.timestamp_column] + ([s.status_column] if s.status_column else [])
    columns = {
        str(name): (_int(typoid), str(typname), _int(attnum))
        for name, typoid, typname, attnum in conn.execute(
            "SELECT attname::text, atttypid::bigint, format_type(atttypid, NULL), attnum"
            " FROM pg_catalog.pg_attribute"
            " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND attname = ANY(%s)",
            (oid, wanted),
        )
    }
    for column in wanted:
        if column not in columns:
            raise TargetError(f"column {column!r} does not exist in table {qualified!r}")
    typoid, typname, attnum = columns[s.timestamp_column]
    if typoid not in _TIMESTAMP_TYPES:
        raise TargetError(
            f"column {s.timestamp_column!r} of table {qualified!r} has type {typname!r};"
            " expected timestamptz, timestamp or date"
        )
    indexed = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index"
        " WHERE indrelid = %s AND indkey[0] = %s AND indisvalid)",
        (oid, attnum),
    ).fetchone()
    return TableInfo(
        oid=oid,
        qualified=qualified,
        relpages=relpages,
        reltuples=reltuples,
        timestamp_type=_TIMESTAMP_TYPES[typoid],
        timestamp_indexed=bool(indexed and indexed[0]),
        can_lock_rows=bool(can_lock),
    )


def table_lock_conflicts(conn: psycopg.Connection[tuple[object, ...]], oid: int) -> bool:
    """Whether another session holds, or waits for, a table lock that blocks DELETE."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'relation'"
        " AND relation = %s AND pid <> pg_backend_pid() AND mode IN"
        " ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'))",
        (oid,),
    ).fetchone()
    return bool(row and row[0])


def relation_blocks(conn: psycopg.Connection[tuple[object, ...]], oid: int) -> int:
    row = conn.execute(
        "SELECT (pg_relation_size(%s::oid) / current_setting('block_size')::bigint)::bigint",
        (oid,),
    ).fetchone()
    return _int(row[0]) if row else 0


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer from the catalog, got {type(value).__name__}")
    return value
