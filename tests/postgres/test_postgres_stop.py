"""A bounded stop: after SIGTERM the postgres target ends by itself even when its peer
stops answering, well before the runner would leave it behind."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

import cleanup.targets.postgres.batches as pg_batches
import cleanup.targets.postgres.db as pg_db
import cleanup.targets.postgres.target as pg_target
from cleanup.runner import STOP_GRACE_S
from cleanup.targets.base import Budget, TargetContext
from cleanup.targets.postgres.settings import PostgresSettings
from tests.postgres.conftest import Jobs
from tests.support.tcpfault import freezing_proxy, silent_server

# docs/events-and-exit-codes.md#exit-codes: run_finished within 10 s of SIGTERM.
STOP_BOUND_S = 10.0


class _Process:
    """`python -m cleanup` in a subprocess, its JSON lines read as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cleanup", "--log-level", "DEBUG", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        )
        self.lines: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._queue.put(json.loads(raw))
        self._queue.put(None)

    def until(self, event: str, timeout: float) -> dict[str, Any]:
        """Wait for the next line of `event`; AssertionError after `timeout` or at the end."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {event!r} line within {timeout} s: {self.lines}"
                ) from None
            if line is None:
                raise AssertionError(f"no {event!r} line before the end: {self.lines}")
            self.lines.append(line)
            if line["event"] == event:
                return line

    def target(self) -> dict[str, Any]:
        (found,) = [x for x in self.lines if x["event"] == "target_finished"]
        return found


@contextmanager
def _cleanup(argv: list[str], env: dict[str, str]) -> Iterator[_Process]:
    process = _Process(argv, env)
    try:
        yield process
    finally:
        process.proc.kill()
        process.proc.wait(10)


def _terminate(process: _Process) -> tuple[dict[str, Any], float]:
    """SIGTERM, then the run_finished line and how long after the signal it came."""
    sent = time.monotonic()
    process.proc.send_signal(signal.SIGTERM)
    finished = process.until("run_finished", timeout=30)
    elapsed = time.monotonic() - sent
    assert process.proc.wait(10) == 143
    assert process.proc.stderr is not None
    assert process.proc.stderr.read() == "", "json format wrote to stderr"
    print(f"run_finished {elapsed:.1f} s after SIGTERM")
    return finished, elapsed


def test_postgres_sigterm_while_connecting_to_a_mute_server_ends_interrupted(jobs: Jobs) -> None:
    """SIGTERM while the server accepted the connection but never answers: run_finished
    within 10 s, exit 143, the target `interrupted` by itself (the attempt is abandoned at
    the stop, not waited out: the runner did not have to leave it behind)."""
    with silent_server() as peer:
        dsn = f"postgresql://cleanup:pw@127.0.0.1:{peer.port}/postgres"
        with _cleanup(jobs.argv(), {"CLEANUP_DATABASE_URL": dsn}) as process:
            process.until("target_started", timeout=30)
            assert peer.accepted.wait(30), "the target never connected"
            finished, elapsed = _terminate(process)
    assert elapsed < STOP_BOUND_S
    # Abandoned at the stop, not waited out: the attempt alone would last connect_timeout
    # from its start, moments before the signal.
    assert elapsed < pg_db.CONNECT_TIMEOUT_S / 2
    assert finished["status"] == "interrupted"
    target = process.target()
    assert target["status"] == "interrupted"
    assert "error" not in target, target  # the runner's "left behind" error


def test_postgres_sigterm_while_a_batch_waits_on_a_frozen_peer_ends_in_time(jobs: Jobs) -> None:
    """SIGTERM while a delete batch waits on a peer that stopped answering mid-run:
    run_finished within 10 s, exit 143, `interrupted`, with no left-behind error; the
    counters are the batches that committed, and the table agrees."""
    jobs.fill(3000, "40 days", "completed")
    url = urlsplit(jobs.dsn)
    assert url.hostname and url.port
    # The third DELETE statement is never forwarded: the peer goes mute with it in flight.
    with freezing_proxy(url.hostname, url.port, freeze_on=b"DELETE FROM", after=3) as peer:
        dsn = jobs.dsn.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{peer.port}")
        with _cleanup(jobs.argv(batch_size=10), {"CLEANUP_DATABASE_URL": dsn}) as process:
            process.until("target_started", timeout=30)
            assert peer.frozen.wait(30), "the run never sent its third DELETE"
            finished, elapsed = _terminate(process)
    assert elapsed < STOP_BOUND_S
    target = process.target()
    assert (finished["status"], target["status"]) == ("interrupted", "interrupted")
    assert "error" not in target, target
    batches = [x["count"] for x in process.lines if x["event"] == "item_deleted"]
    assert batches, "the peer froze mid-run, after a committed batch"
    assert target["deleted"] == sum(batches) == 3000 - jobs.count()


def test_postgres_retry_back_off_is_cut_short_by_the_stop(jobs: Jobs, monkeypatch: Any) -> None:
    """A batch waiting out its retry back-off ends as soon as the stop is set: the target
    returns (interrupted, not failed) without sleeping the back-off out."""
    monkeypatch.setattr(pg_db, "LOCK_TIMEOUT", "100ms")
    monkeypatch.setattr(pg_batches, "RETRY_BACKOFF_S", 60.0)
    jobs.fill(100, "40 days", "completed")
    settings = PostgresSettings(name="jobs", table=jobs.name, max_age=30 * 86400, dsn=jobs.dsn)
    stop = threading.Event()
    ctx = TargetContext(
        name="jobs",
        kind="postgres",
        cutoff=datetime.now(UTC),
        dry_run=False,
        budget=Budget(0),
        stop=stop,
        logger=logging.getLogger("cleanup.test"),
    )
    retried = threading.Event()
    original = ctx.event

    def event(level: int, name: str, message: str, **fields: Any) -> None:
        if name == "batch_retry":
            retried.set()
        original(level, name, message, **fields)

    monkeypatch.setattr(ctx, "event", event)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            pg_target.PostgresTarget(settings).run(ctx)
        except BaseException as exc:
            raised.append(exc)

    holders: list[psycopg.Connection[Any]] = []
    original_batch = pg_target.PostgresTarget._batch

    def batch(self: pg_target.PostgresTarget, *args: Any) -> tuple[int, bool]:
        if not holders:  # another session locks the table just before the first batch
            holder = psycopg.connect(jobs.dsn)
            holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(jobs.ident))
            holders.append(holder)
        return original_batch(self, *args)

    monkeypatch.setattr(pg_target.PostgresTarget, "_batch", batch)
    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert retried.wait(30), "the batch never hit the lock"
        stopped = time.monotonic()
        stop.set()
        thread.join(30)
        took = time.monotonic() - stopped
    finally:
        for holder in holders:
            holder.close()
    assert not thread.is_alive()
    assert raised == []
    assert took < 5.0  # the back-off would take 60 s
    assert (ctx.counters.deleted, jobs.count()) == (0, 100)


def test_postgres_sessions_have_keepalives_and_a_user_timeout_within_the_grace(
    jobs: Jobs,
) -> None:
    """The target's TCP socket probes an idle peer and gives up on unacknowledged data, both
    within the runner's grace after a stop, so a dead peer cannot hold a run."""
    settings = PostgresSettings(name="jobs", table=jobs.name, max_age=86400, dsn=jobs.dsn)
    conn = pg_db.connect(settings, threading.Event())
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            options = {
                name: sock.getsockopt(level, option)
                for name, level, option in (
                    ("keepalive", socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    ("idle", socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    ("interval", socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                    ("count", socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                    ("user_timeout_ms", socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
                )
            }
    finally:
        conn.close()
    assert options["keepalive"] == 1
    assert 0 < options["idle"] + options["interval"] * options["count"] <= STOP_GRACE_S
    assert 0 < options["user_timeout_ms"] <= STOP_GRACE_S * 1000
