"""The throwaway server helper: it answers, and it never outlives its owner."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.support import containers, pgserver
from tests.support.pgserver import postgres_server

ROOT = Path(__file__).resolve().parents[2]


def _refuses(dsn: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(dsn, connect_timeout=1):
                pass
        except psycopg.OperationalError:
            return True
        time.sleep(0.2)
    return False


def test_pgserver_listens_on_loopback_and_stops_on_exit() -> None:
    """The server takes a password on 127.0.0.1 (14+) and is gone after the block."""
    with postgres_server() as dsn:
        assert urlsplit(dsn).hostname == "127.0.0.1"
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT current_setting('server_version_num')::int,"
                " current_setting('listen_addresses')"
            ).fetchone()
        assert row is not None
        assert row[0] >= 140000
        assert row[1] in ("127.0.0.1", "*")  # "*" only inside a container
    assert _refuses(dsn, within=5)


def test_pgserver_stops_when_its_owner_is_killed() -> None:
    """A SIGKILLed owner leaves no server running: the postmaster gets a death signal."""
    owner = subprocess.Popen(
        [sys.executable, "-m", "tests.support.pgserver"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        dsn = owner.stdout.readline().strip()
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT current_setting('unix_socket_directories')").fetchone()
        assert row is not None
        home = Path(str(row[0]))  # the cluster's temp dir (local server only)
    finally:
        owner.kill()
        owner.wait()
    assert _refuses(dsn, within=15)
    # The killed owner could not remove the cluster's directory: do it once it is down.
    if (home / "data").is_dir():
        deadline = time.monotonic() + 15
        while (home / "data" / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (home / "data" / "postmaster.pid").exists()
        shutil.rmtree(home)


@pytest.mark.skipif(containers.required(), reason="the local server's port choice only")
def test_pgserver_port_taken_meanwhile_starts_on_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the free port it picked is taken before the server binds it, it takes another."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    picks = iter([taken])
    real = pgserver._free_port
    monkeypatch.setattr(pgserver, "_free_port", lambda: next(picks, None) or real())
    try:
        with pgserver.postgres_server() as dsn:
            assert urlsplit(dsn).port not in (None, taken)
            with psycopg.connect(dsn) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        holder.close()
