"""Static checks of the deployment files: hadolint on the Dockerfile, shellcheck on every script."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
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


def test_dockerfile_contract() -> None:
    """Slim official base by default, numeric non-root user, exec-form `cleanup` entrypoint."""
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.12-slim\S*$", text, re.M)
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\}", text, re.M)) == 2
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["cleanup"\]$', text, re.M)
    assert "compileall" in text
    assert "org.opencontainers.image." in text
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, "the build context is an allow-list"


def test_dockerfile_uv_is_the_pinned_uv() -> None:
    """The Dockerfile installs the uv that pyproject.toml pins (tool.uv.required-version), the
    one scripts/bootstrap.sh installs and the one that wrote uv.lock."""
    pinned = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]["required-version"]
    found = re.findall(r"^ARG UV_VERSION=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert [f"=={version}" for version in found] == [pinned]
