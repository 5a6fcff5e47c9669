"""SIGTERM / SIGINT during a sweep of a large tree (docs/events-and-exit-codes.md#exit-codes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Child
from tests.volumes.conftest import children, process_state

FILES = 150_000


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """150,000 empty files in 1,500 directories, all 30 days old."""
    # tmpfs when there is one: building the tree on a busy disk would dominate the test's time.
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix="cleanup-big-", dir=shm or tmp_path_factory.getbasetemp()))
    old = time.time() - 30 * 86400
    for d in range(FILES // 100):
        sub = root / f"d{d:04}"
        sub.mkdir()
        for f in range(100):
            fd = os.open(sub / f"f{f}", os.O_CREAT | os.O_WRONLY, 0o644)
            os.utime(fd, (old, old))
            os.close(fd)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_sweep_stops_quickly_with_summary(
    big_tree: Path, tmp_path: Path, sig: signal.Signals, code: int, workers: int
) -> None:
    """A signal mid-sweep stops within 10 s, logs run_finished `interrupted`, exits 130/143,
    and leaves no worker process deleting behind it."""
    before = count_files(big_tree)
    assert before > 1000, "the previous case must leave enough files to interrupt"
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'max_age = "7d"\n[[volumes]]\nname = "big"\npath = "{big_tree}"\nworkers = {workers}\n'
        f'[[volumes]]\nname = "after"\npath = "{tmp_path}"\n'
    )
    # DEBUG prints a line per item, which keeps the sweep busy long enough to be interrupted.
    proc = Child(["--config", str(cfg), "--log-level", "DEBUG"], cwd=str(tmp_path))
    deleted_seen = 0
    for line in proc.stdout:
        if '"item_deleted"' in line:
            deleted_seen += 1
            if deleted_seen == 200:
                break
    workers_seen = children(proc.pid)
    assert len(workers_seen) == (workers if workers > 1 else 0)
    sent = time.monotonic()
    proc.send_signal(sig)
    returncode, rest = proc.ended(timeout=30)
    elapsed = time.monotonic() - sent
    assert returncode == code
    assert elapsed < 10, f"took {elapsed:.1f}s to stop"
    lines = [json.loads(line) for line in rest.splitlines()]
    summary = lines[-1]
    assert summary["event"] == "run_finished"
    assert (summary["status"], summary["exit_code"]) == ("interrupted", code)
    statuses = {t["target"]: t["status"] for t in summary["targets"]}
    assert statuses == {"big": "interrupted", "after": "skipped"}
    left = count_files(big_tree)
    assert 0 < left < before
    assert before - left == summary["deleted"]
    running = {pid: process_state(pid) for pid in workers_seen}
    assert set(running.values()) <= {"gone", "Z"}, f"workers outlived the run: {running}"
