"""Run the CLI as another identity, in a subprocess that does not depend on the checkout.

The checkout (and its venv) may sit in a directory only root can enter, so the child
gets a copy of what it imports in a world-readable directory, on PYTHONPATH, and an
interpreter that identity can run; its working directory is world-readable too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pythonjsonlogger

import cleanup
from tests.support.cli import Result

NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
# uid 0 with every capability dropped, as in a root container with `drop: [ALL]`.
AS_ROOT_WITHOUT_CAPABILITIES = ("setpriv", "--inh-caps=-all", "--bounding-set=-all")
_PROBE = (
    "import os, sys, tomllib, ctypes; "
    "sys.exit(0 if sys.version_info >= (3, 11) and os.access(sys.executable, os.X_OK) else 1)"
)


# What one run printed, parsed: the same record as an in-process run's.
Run = Result


@dataclass
class Sandbox:
    """A world-readable directory with the package in it, and a way to run the CLI there."""

    base: Path
    interpreter: str
    site: Path

    def run(self, identity: Sequence[str], *argv: str, timeout: float = 120) -> Run:
        """Run `cleanup argv` as `identity` (a setpriv command line; () = this process's)."""
        proc = subprocess.run(
            [*identity, self.interpreter, "-s", "-m", "cleanup", *argv],
            capture_output=True,
            text=True,
            cwd=self.base,
            env={"PYTHONPATH": str(self.site), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            timeout=timeout,
            check=False,
        )
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if "text" not in argv:
            assert proc.stderr == "", f"json format wrote to stderr: {proc.stderr}"
        return Result(proc.returncode, proc.stdout, proc.stderr, lines)


def _interpreter() -> str | None:
    """A Python >= 3.11 that an unprivileged user can run (the venv's may be out of reach)."""
    candidates = [os.path.realpath(sys.executable), os.path.realpath(sys._base_executable)]
    candidates += [path for path in ("/usr/bin/python3", "/usr/local/bin/python3")]
    for candidate in dict.fromkeys(candidates):
        if not os.path.exists(candidate):
            continue
        probe = subprocess.run(
            [*AS_NOBODY, candidate, "-s", "-c", _PROBE], cwd="/", capture_output=True, check=False
        )
        if probe.returncode == 0:
            return candidate
    return None


@contextmanager
def sandbox() -> Iterator[Sandbox]:
    """A Sandbox in a fresh temporary directory, removed after; skips unless run as root."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to run the CLI as another identity")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to switch identity")
    interpreter = _interpreter()
    if interpreter is None:
        pytest.skip("no Python >= 3.11 that an unprivileged user can run")
    base = Path(tempfile.mkdtemp(prefix="cleanup-other-user-"))
    try:
        site = base / "site"
        for package in (cleanup, pythonjsonlogger):
            source = Path(package.__file__ or "").parent
            shutil.copytree(
                source, site / source.name, ignore=shutil.ignore_patterns("__pycache__")
            )
        for path in [base, *base.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        yield Sandbox(base, interpreter, site)
    finally:
        subprocess.run(["chattr", "-R", "-i", "-a", str(base)], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
