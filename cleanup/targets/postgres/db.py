"""PostgreSQL session plumbing for the postgres target: connect, redact, lock, stop.

Imported only by cleanup.targets.postgres, so psycopg loads only when a
postgres target runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from types import TracebackType
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from cleanup.errors import TargetError
from cleanup.redact import REDACTED
from cleanup.redact import redact as redact_generic
from cleanup.targets.postgres.settings import PostgresSettings

Connection = psycopg.Connection[tuple[object, ...]]

CONNECT_TIMEOUT_S = 5
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF_S = 1.0
# A peer that dies (host gone, network cut) is noticed within about 6 s, inside the
# runner's 7 s grace after a stop: an idle connection is probed after 3 s, then every
# second, and given up after 3 unanswered probes (3 + 3 x 1 s); data that stays
# unacknowledged for 6 s ends the connection too. A live server that is merely slow
# (a long count) still answers the probes, so these never cut a long statement.
KEEPALIVES_IDLE_S = 3
KEEPALIVES_INTERVAL_S = 1
KEEPALIVES_COUNT = 3
TCP_USER_TIMEOUT_MS = 6000
# After a stop request: how long the statement in flight may take to finish on its
# own, how long its cancel request may take, and how long the cancelled statement may
# take to return before the socket is cut. Together (4.5 s) they stay inside the
# runner's 7 s grace, so the target itself ends in time even when the peer stops
# answering (the proxy in front of it froze, say).
STOP_FINISH_S = 2.0
CANCEL_TIMEOUT_S = 1.5
CANCEL_WAIT_S = 1.0
_POLL_S = 0.1
# Short enough that the application never queues behind us for long, long enough
# that a busy table does not fail every batch.
LOCK_TIMEOUT = "2s"
STATEMENT_TIMEOUT = "30s"
# If this process hangs inside a batch, the server ends the transaction and frees its locks.
IDLE_IN_TRANSACTION_TIMEOUT = "60s"
APPLICATION_NAME = "cleanup"


class Stopped(Exception):
    """The stop request came while the target waited on the database."""


def _passwords(dsn: str) -> set[str]:
    """The DSN's password as libpq reads it, and as a URL spells it."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:  # malformed: the generic patterns below still apply
        return set()
    if not isinstance(password, str):
        return set()
    # A very short password would turn every message into noise if replaced everywhere;
    # the generic patterns still hide it where libpq echoes a conninfo.
    return {p for p in (password, quote(password, safe="")) if len(p) >= 3}


def redact(text: str, dsn: str) -> str:
    """`text` with the DSN's password removed, whatever shape libpq echoed it in."""
    for password in sorted(_passwords(dsn), key=len, reverse=True):
        text = text.replace(password, REDACTED)
    return redact_generic(text)


def describe(exc: BaseException, dsn: str) -> str:
    """A one-line, password-free description of a database error."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return redact(message, dsn)


def require_dsn(s: PostgresSettings) -> None:
    """Fail at once, naming the variable, when there is no DSN and no libpq variable either."""
    if s.dsn or s.libpq_env:
        return
    raise TargetError(
        f"no PostgreSQL DSN: the environment variable {s.dsn_env} (dsn_env) is not set;"
        " set it to the database URL (for example from a Secret) or set libpq's"
        " PGHOST/PGDATABASE"
    )


def _connect_once(dsn: str, stop: threading.Event) -> Connection:
    """One psycopg.connect, abandoned as soon as the stop is requested.

    The attempt runs in a daemon thread of its own (a connect cannot be interrupted
    from outside); an attempt that still succeeds after it was abandoned closes its
    connection itself.
    """
    outcome: list[Connection | BaseException] = []
    lock = threading.Lock()
    abandoned = False

    def attempt() -> None:
        result: Connection | BaseException
        try:
            result = psycopg.connect(
                dsn,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=APPLICATION_NAME,
                keepalives=1,
                keepalives_idle=KEEPALIVES_IDLE_S,
                keepalives_interval=KEEPALIVES_INTERVAL_S,
                keepalives_count=KEEPALIVES_COUNT,
                tcp_user_timeout=TCP_USER_TIMEOUT_MS,
            )
        except BaseException as exc:  # handed to the waiting thread
            result = exc
        with lock:
            if abandoned:
                if isinstance(result, psycopg.Connection):
                    result.close()
                return
            outcome.append(result)

    worker = threading.Thread(target=attempt, name="postgres-connect", daemon=True)
    worker.start()
    while True:
        worker.join(_POLL_S)
        with lock:
            if outcome:
                break
            if stop.is_set():
                abandoned = True
                raise Stopped
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def dsn_source(s: PostgresSettings) -> str:
    """Where the DSN came from, for messages that say what to check."""
    return f"the DSN in {s.dsn_env}" if s.dsn else "libpq's PG* environment variables"


def connect(s: PostgresSettings, stop: threading.Event) -> Connection:
    """An autocommit session with our timeouts, retried with back-off on connection errors.

    Raises Stopped when the stop request comes first.
    """
    dsn = s.dsn
    last: psycopg.Error | None = None
    for attempt in range(CONNECT_ATTEMPTS):
        if stop.is_set():
            raise Stopped
        try:
            conn = _connect_once(dsn, stop)
        except psycopg.OperationalError as exc:
            last = exc
            if attempt + 1 < CONNECT_ATTEMPTS and stop.wait(CONNECT_BACKOFF_S * 2**attempt):
                raise Stopped from exc
            continue
        except psycopg.Error as exc:  # a malformed DSN: retrying cannot help
            raise TargetError(
                f"invalid PostgreSQL DSN in {s.dsn_env}: {describe(exc, dsn)}"
            ) from exc
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
        f"cannot connect to PostgreSQL after {CONNECT_ATTEMPTS} attempts: {describe(last, dsn)};"
        f" check {dsn_source(s)} and that the server accepts connections from here"
    ) from last


class StopGuard:
    """While open, bounds how long a stop request can wait on this connection.

    After the stop, the statement in flight gets STOP_FINISH_S to end by itself; then it
    is cancelled on the server (CANCEL_TIMEOUT_S at most for the request); if it still
    has not returned CANCEL_WAIT_S later, the socket is shut down, so the waiting call
    fails at once with a connection error (the server rolls the open transaction back).
    Leave the block before closing the connection: the guard never touches it after.
    """

    def __init__(self, conn: Connection, stop: threading.Event) -> None:
        self._conn = conn
        self._stop = stop
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="postgres-stop", daemon=True)

    def __enter__(self) -> StopGuard:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:  # waits for a cancel in progress: the connection stays valid for it
            self._done.set()

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self._done.wait(_POLL_S):
                return
        if self._done.wait(STOP_FINISH_S):
            return
        with self._lock:
            if self._done.is_set():
                return
            # No answer to the cancel either (a frozen peer): the socket is cut below.
            with contextlib.suppress(Exception):
                self._conn.cancel_safe(timeout=CANCEL_TIMEOUT_S)
        if self._done.wait(CANCEL_WAIT_S):
            return
        with self._lock:
            if not self._done.is_set():
                self._cut()

    def _cut(self) -> None:
        try:
            fd = self._conn.pgconn.socket
        except psycopg.Error:  # already closed or broken
            return
        # A duplicate of the descriptor: shutdown acts on the socket the target waits on,
        # while the descriptor itself stays the connection's to close.
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)


LOCK_KEY = "hashtext('cleanup:' || %s::text || '.' || %s::text)"


def try_advisory_lock(conn: Connection, s: PostgresSettings) -> bool:
    row = conn.execute(
        f"SELECT pg_try_advisory_lock({LOCK_KEY})",
        (s.schema, s.table),
    ).fetchone()
    return bool(row and row[0])


def advisory_unlock(conn: Connection, s: PostgresSettings) -> None:
    conn.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})", (s.schema, s.table))


def server_version(conn: Connection) -> int:
    """server_version_num (150004 for 15.4): what picks the batch and detach strategies."""
    return int(conn.info.server_version)
