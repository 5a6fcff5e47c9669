"""Static checks of the deployment files: hadolint on the Dockerfile, shellcheck on every script."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.deploy.conftest import REPO, run, tool

SKIP_DIRS = {".git", ".venv", ".cache", "node_modules"}


def _shell_scripts() -> list[str]:
    """Every shell script in the repository: *.sh files and files with a sh/bash shebang."""
    found = []
    for directory, subdirs, files in os.walk(REPO):
        # Pruned, not filtered: .cache holds container storage with whole root filesystems.
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS)
        for name in sorted(files):
            path = Path(directory, name)
            if path.suffix == ".sh":
                found.append(str(path))
                continue
            if not path.is_file() or path.is_symlink():
                continue
            with path.open("rb") as handle:
                head = handle.readline(200)
            if re.match(rb"#!\s*(/usr)?/bin/(env\s+)?(ba|da)?sh\b", head):
                found.append(str(path))
    return found


def test_dockerfile_passes_hadolint() -> None:
    """hadolint reports nothing on the Dockerfile (warnings included)."""
    proc = run(
        [tool("hadolint"), "--failure-threshold", "style", str(REPO / "Dockerfile")], check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    """shellcheck reports nothing on any shell script, .ci/run and the setup hooks included."""
    scripts = _shell_scripts()
    relative = {str(p.relative_to(REPO)) for p in map(REPO.joinpath, scripts)}
    assert {".ci/run", "scripts/test.sh", "scripts/setup.d/tools.sh"} <= relative
    proc = subprocess.run(
        [tool("shellcheck"), "--severity=style", *scripts],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
