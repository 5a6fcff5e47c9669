"""Helpers for volume tests: files with ages relative to a fixed run clock."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.cli import Result, run_cli

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
DAY = 86400


def age(path: Path | str | bytes, days: float) -> None:
    """Set a path's own mtime (not a link's target) to `days` before NOW."""
    stamp = NOW.timestamp() - days * DAY
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def make(root: Path, rel: str, days: float, content: str = "x") -> Path:
    """Create a file (and its parents) with the given age in days."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    age(path, days)
    return path


_workers = [1]


@pytest.fixture(autouse=True, params=[1, 2], ids=["1-worker", "2-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    """Every volume test runs with the single-process sweep and with two worker processes."""
    _workers[0] = request.param
    return _workers[0]


def config(tmp_path: Path, root: Path, **keys: object) -> str:
    """Write a config with one volume target named `v`, max_age 7d by default."""
    lines = ["[[volumes]]", 'name = "v"', f'path = "{root}"']
    keys.setdefault("max_age", "7d")
    keys.setdefault("workers", _workers[0])
    for key, value in keys.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, int):
            lines.append(f"{key} = {value}")
        elif isinstance(value, list):
            lines.append(f"{key} = {value!r}".replace("'", '"'))
        else:
            lines.append(f'{key} = "{value}"')
    path = tmp_path / "cleanup.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def sweep(
    tmp_path: Path, root: Path, *argv: str, env: dict[str, str] | None = None, **keys: object
) -> Result:
    """Run the real CLI on one volume target at the fixed clock."""
    args: Sequence[str] = ["--config", config(tmp_path, root, **keys), *argv]
    return run_cli(args, env or {}, now=NOW)


def listing(root: Path) -> set[str]:
    """Every path under root, relative, directories with a trailing slash."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames:
            entry = os.path.normpath(os.path.join(rel, name))
            found.add(entry if os.path.islink(os.path.join(dirpath, name)) else entry + "/")
        for name in filenames:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


def children(pid: int) -> set[int]:
    """The child processes of `pid`, from /proc."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll `condition` until it holds; fail after a generous `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def process_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[0]
