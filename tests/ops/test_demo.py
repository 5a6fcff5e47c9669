"""The Quick start's demo (`bash scripts/demo.sh`): all three stores, dry run then real run, no leftovers."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _cmdlines() -> list[str]:
    """The command lines of all running processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return found


def test_demo_shows_three_stores_and_leaves_nothing_running(tmp_path: Path) -> None:
    """The demo exits 0 within 2 minutes, shows volumes, S3 and PostgreSQL, and leaves no server or dir."""
    # A temp dir of this test's own: another demo running beside it cannot look like a leftover.
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CLEANUP_DATABASE_URL"}
    env["TMPDIR"] = str(temp)
    began = time.monotonic()
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    elapsed = time.monotonic() - began
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed < 120, f"demo took {elapsed:.0f} s"
    summaries = [
        json.loads(line)
        for line in proc.stdout.splitlines()
        if line.startswith("{") and '"run_finished"' in line
    ]
    assert [s["dry_run"] for s in summaries] == [True, False]
    dry, real = summaries
    assert {t["kind"] for t in real["targets"]} == {"volumes", "s3", "postgres"}
    for before, after in zip(dry["targets"], real["targets"], strict=True):
        assert after["deleted"] == before["matched"] > 0, (before, after)
        assert before["deleted"] == 0
    assert "target   kind      status" in proc.stdout
    assert "volume files: output/.keep, output/job-42/result.csv, temp/upload-2.part" in proc.stdout
    assert not glob.glob(os.path.join(temp, "cleanup-demo-*")), "the demo left its directory"
    # Other test sessions may run their own servers: look for this demo's, by port.
    match = re.search(
        r"S3 endpoint http://127\.0\.0\.1:(\d+); PostgreSQL 127\.0\.0\.1:(\d+)", proc.stdout
    )
    assert match, proc.stdout[:2000]
    s3_port, pg_port = match.groups()
    assert not [c for c in _cmdlines() if f"port={pg_port} " in c], "PostgreSQL still running"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(s3_port))) != 0, "S3 server still listening"


def test_demo_without_venv_installs_demo_extra_only_and_shows_the_job_first(tmp_path: Path) -> None:
    """From a checkout without .venv, the job's first line comes within 20 lines and no test tool is installed."""
    checkout = tmp_path / "checkout"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in tracked)):
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CLEANUP_DATABASE_URL", "VIRTUAL_ENV")}
    env["TMPDIR"] = str(temp)
    proc = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=checkout,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    first = proc.stdout.splitlines()[:20]
    assert "$ cleanup --config demo.toml --dry-run" in first, "\n".join(first)
    assert any('"event": "run_started"' in line for line in first), "\n".join(first)
    venv = checkout / ".venv"
    check = "import importlib.util as u; print([m for m in ('pytest', 'mypy', 'ruff', 'mkdocs') if u.find_spec(m)])"
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", check], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"
