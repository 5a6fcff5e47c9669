"""The volume sweep shared out over worker processes (`workers` > 1)."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cleanup import runner
from cleanup.config import CliOptions, load_settings
from cleanup.logs import configure
from cleanup.targets.volumes.settings import VolumeSettings
from tests.support.cli import Child
from tests.volumes.conftest import (
    NOW,
    children,
    config,
    listing,
    make,
    process_state,
    sweep,
    wait_for,
)


@pytest.fixture
def workers() -> int:
    """These tests are about the worker processes themselves: not run once per worker count."""
    return 2


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def record_unlinks(monkeypatch: pytest.MonkeyPatch, log: Path, meet: int = 0) -> None:
    """Make every unlink, in this process or a forked worker, append the caller's pid to `log`.

    With `meet`, each process's first unlink waits until `meet` processes have logged one:
    no worker can sweep everything before the others have started.
    """
    real_unlink = os.unlink
    first = [True]

    def unlink(name: str, *, dir_fd: int | None = None) -> None:
        with open(log, "a") as out:
            out.write(f"{os.getpid()}\n")
        if meet and first[0]:
            first[0] = False
            wait_for(lambda: len(set(log.read_text().split())) >= meet, f"{meet} unlinking pids")
        real_unlink(name, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)


def on_unlink(monkeypatch: pytest.MonkeyPatch, name: str, action: Callable[[], None]) -> None:
    """Run `action` whenever a file called `name` is about to be unlinked."""
    real_unlink = os.unlink

    def unlink(entry: str, *, dir_fd: int | None = None) -> None:
        if entry == name:
            action()
        real_unlink(entry, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)


def test_workers_share_the_tree_between_processes(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With workers = 2, two processes other than the coordinator do the deleting."""
    for i in range(120):
        make(root, f"d{i % 30}/f{i}", 30)
    make(root, "top-level-old", 30)
    make(root, "d0/fresh", 1)
    log = tmp_path / "unlinks"
    record_unlinks(monkeypatch, log, meet=2)
    result = sweep(tmp_path, root, workers=2)
    pids = set(log.read_text().split())
    assert len(pids) == 2 and str(os.getpid()) not in pids
    assert listing(root) == {f"d{i}/" for i in range(30)} | {"d0/fresh"}
    target = result.target("v")
    assert (target["status"], target["deleted"], target["scanned"]) == ("ok", 121, 122)


def test_workers_capped_run_stays_in_one_process(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cap makes the target sweep in the coordinator alone, so a dry run names the same items."""
    for i in range(40):
        make(root, f"d{i % 8}/f{i}", 30)
    log = tmp_path / "unlinks"
    record_unlinks(monkeypatch, log)
    dry = sweep(
        tmp_path, root, "--dry-run", "--max-deletions", "7", "--log-level", "DEBUG", workers=2
    )
    real = sweep(tmp_path, root, "--max-deletions", "7", "--log-level", "DEBUG", workers=2)
    assert set(log.read_text().split()) == {str(os.getpid())}
    assert [line["path"] for line in dry.events("item_would_delete")] == [
        line["path"] for line in real.events("item_deleted")
    ]
    assert real.target("v")["status"] == "capped" and real.target("v")["deleted"] == 7


def test_workers_error_in_a_worker_fails_the_target(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error inside a worker fails the target with that error, and exits 1."""
    for i in range(20):
        make(root, f"d{i % 5}/f{i}", 30)
    make(root, "d3/bad", 30)

    def boom() -> None:
        raise RuntimeError("boom")

    on_unlink(monkeypatch, "bad", boom)
    result = sweep(tmp_path, root, workers=2)
    target = result.target("v")
    assert target["status"] == "failed" and target["level"] == "ERROR"
    assert target["error"] == "a volume worker failed: RuntimeError: boom"
    assert (root / "d3" / "bad").exists()
    assert result.exit_code == 1 and result.summary["status"] == "failed"


def test_workers_killed_worker_fails_the_target(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed outright (the OOM killer, say) fails the target instead of hanging it."""
    for i in range(20):
        make(root, f"d{i % 5}/f{i}", 30)
    make(root, "d2/poison", 30)
    coordinator = os.getpid()

    def die() -> None:
        if os.getpid() != coordinator:
            os.kill(os.getpid(), signal.SIGKILL)

    on_unlink(monkeypatch, "poison", die)
    result = sweep(tmp_path, root, workers=2)
    target = result.target("v")
    assert target["status"] == "failed"
    assert target["error"] == "1 volume worker process(es) ended abnormally"
    assert result.exit_code == 1


def test_workers_progress_events_carry_live_counters(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress events during a worker sweep show the workers' counters as they grow."""
    for i in range(3000):
        make(root, f"d{i % 30}/f{i}", 30)
    real_lstat = os.lstat
    shown = tmp_path / "progress-shown"
    calls = [0]

    def paused_lstat(name: str, *, dir_fd: int | None = None) -> os.stat_result:
        # Each worker stops at its 600th entry (after counter reports at 256 and 512) until
        # the coordinator has logged a progress event with deletions in it.
        calls[0] += 1
        if calls[0] == 600:
            wait_for(shown.exists, "a progress event during the sweep")
        return real_lstat(name, dir_fd=dir_fd)

    def watch(record: logging.LogRecord) -> bool:
        if getattr(record, "event", None) == "progress" and getattr(record, "deleted", 0) > 0:
            shown.touch()
        return True

    monkeypatch.setattr(os, "lstat", paused_lstat)
    logging.getLogger("cleanup").addFilter(watch)
    try:
        result = sweep(tmp_path, root, env={"CLEANUP_PROGRESS_INTERVAL": "1s"}, workers=2)
    finally:
        logging.getLogger("cleanup").removeFilter(watch)
    progress = result.events("progress")
    assert progress, result.stdout
    assert all(0 < line["deleted"] <= 3000 for line in progress)
    assert progress[0]["deleted"] < 3000, "the first progress event came after the sweep"
    assert result.target("v")["deleted"] == 3000


def test_workers_stop_set_at_start_ends_interrupted_with_nothing_deleted(
    tmp_path: Path, root: Path
) -> None:
    """A stop already requested when the workers start ends the target `interrupted`, never
    `failed`: no worker dies of the forwarded signal before it has a handler for it."""
    for i in range(40):
        make(root, f"d{i % 10}/f{i}", 30)
    before = listing(root)
    settings = load_settings(CliOptions(config=config(tmp_path, root, workers=2)), {})
    target = settings.targets[0]
    assert isinstance(target, VolumeSettings) and target.workers == 2
    logger = configure("INFO", "json", {}, stream=io.StringIO())
    stop = threading.Event()
    stop.set()
    # pytest leaves SIGTERM at its default action, which kills a process that has no handler.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    for _ in range(20):  # the race it guards against is narrow: give it many chances
        result = runner.run_target(target, settings, NOW, stop, logger)
        assert result.status == "interrupted", result
        assert result.counters["deleted"] == 0
    assert listing(root) == before


def test_workers_sigterm_reaches_a_worker_deep_in_one_subtree(tmp_path: Path) -> None:
    """SIGTERM to the main process stops a worker in the middle of one large subdirectory."""
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix="cleanup-deep-", dir=shm or tmp_path))
    try:
        only = root / "only"
        only.mkdir()
        old = time.time() - 30 * 86400
        for i in range(30_000):
            fd = os.open(only / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
            os.utime(fd, (old, old))
            os.close(fd)
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'max_age = "7d"\n[[volumes]]\nname = "deep"\npath = "{root}"\nworkers = 2\n'
        )
        proc = Child(["--config", str(cfg), "--log-level", "DEBUG"], cwd=str(tmp_path))
        for seen, _line in enumerate(proc.stdout):
            if seen == 200:
                break
        proc.send_signal(signal.SIGTERM)
        returncode, rest = proc.ended(timeout=30)
        assert returncode == 143
        summary = json.loads(rest.splitlines()[-1])
        left = len(os.listdir(only))
        assert summary["status"] == "interrupted" and left > 0, "the worker swept on to the end"
        assert 30_000 - left == summary["deleted"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


# Run in the CLI's process: every worker forked from it blocks on the file named `stuck`,
# after writing its pid to MARK, either stopped (SIGSTOP) or in an open() that never returns.
_STUCK_WORKER = """
import os, signal, sys
from cleanup import cli

MARK, FIFO, HOW, CONFIG = sys.argv[1:5]
real_unlink = os.unlink


def unlink(name, *, dir_fd=None):
    if name == "stuck":
        with open(MARK + ".tmp", "w") as out:
            out.write(str(os.getpid()))
        os.rename(MARK + ".tmp", MARK)
        if HOW == "stopped":
            os.kill(os.getpid(), signal.SIGSTOP)
        else:
            open(FIFO).close()  # no writer ever comes
    real_unlink(name, dir_fd=dir_fd)


os.unlink = unlink
sys.argv = ["cleanup", "--config", CONFIG]
cli.main_exit()
"""


@pytest.mark.parametrize("how", ["stopped", "blocked"])
def test_workers_stuck_worker_is_killed_after_sigterm_within_bound(
    tmp_path: Path, root: Path, how: str
) -> None:
    """A worker that does not stop (SIGSTOPped, or blocked in a call that never returns) is
    killed after the stop: run_finished comes within 10 s of SIGTERM, the target is
    `interrupted`, the exit code 143, and no worker process is left."""
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs /proc/PID/task/TID/children to find the worker processes")
    for i in range(40):
        make(root, f"d{i % 8}/f{i}", 30)
    make(root, "d3/stuck", 30)
    mark, fifo = tmp_path / "stuck-pid", tmp_path / "never"
    os.mkfifo(fifo)
    cfg = config(tmp_path, root, max_age="1d", workers=2)
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK_WORKER, str(mark), str(fifo), how, cfg],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        wait_for(mark.exists, "a worker to reach the stuck file")
        stuck = int(mark.read_text())
        if how == "stopped":
            wait_for(lambda: process_state(stuck) == "T", "the worker to stop")
        workers = children(proc.pid)
        assert stuck in workers and len(workers) == 2
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in out.splitlines()]
    assert err == "", f"json format wrote to stderr: {err}"
    assert elapsed < 10, f"run_finished came {elapsed:.1f} s after SIGTERM"
    summary = lines[-1]
    assert summary["event"] == "run_finished" and proc.returncode == 143, out + err
    assert (summary["status"], summary["exit_code"]) == ("interrupted", 143)
    target = next(line for line in lines if line["event"] == "target_finished")
    assert target["status"] == "interrupted", target
    killed = [line for line in lines if line.get("code") == "worker_killed"]
    assert [line["pid"] for line in killed] == [stuck]
    assert {pid: process_state(pid) for pid in workers} == dict.fromkeys(workers, "gone")
    assert (root / "d3" / "stuck").exists() and not err
