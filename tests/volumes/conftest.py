"""Helpers for volume tests: files with ages relative to a fixed run clock."""

from __future__ import annotations

import os
from collections.abc import Sequence
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
