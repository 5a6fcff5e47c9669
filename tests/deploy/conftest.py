"""Fixtures for the deployment tests: real helm 3 and 4, kubectl (kustomize), kubernetes-validate.

The binaries come from scripts/setup.d/tools.sh (run by scripts/test.sh). A missing
binary fails the tests loudly instead of skipping them: a skipped deploy check
would look like a passing one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "cleanup"
K8S = REPO / "k8s"
VALUES = Path(__file__).resolve().parent / "values"
BAD_VALUES = Path(__file__).resolve().parent / "bad-values"
CACHE_BIN = REPO / ".cache" / "bin"
HELMS = ("helm3", "helm4")
# The oldest Kubernetes the chart supports well (timeZone and podFailurePolicy are GA
# from 1.27 and 1.31; 1.30 still serves both) and the newest schema this
# kubernetes-validate ships.
# Lines the image test wants in the terminal summary (image size, build time),
# visible in CI logs even though pytest captures the output of passing tests.
SUMMARY: list[str] = []
K8S_VERSIONS = ("1.30.0", f"{kubernetes_validate.latest_version()}.0")


def tool(name: str) -> str:
    """Absolute path of a tool from .cache/bin, the venv (hadolint) or PATH; fails when absent."""
    for directory in (CACHE_BIN, Path(sys.executable).parent):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run scripts/setup.d/tools.sh (or scripts/test.sh)")
    return found


def run(argv: Sequence[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; on an unexpected failure show its stderr."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}\n{proc.stdout}")
    return proc


def load_docs(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a rendered manifest stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass
class Rendered:
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]


def helm_template(
    helm: str,
    values: Sequence[Path] = (),
    release: str = "rel",
    namespace: str = "apps",
    sets: Sequence[str] = (),
) -> Rendered:
    argv = [tool(helm), "template", release, str(CHART), "--namespace", namespace]
    for path in values:
        argv += ["--values", str(path)]
    for item in sets:
        argv += ["--set", item]
    return Rendered(load_docs(run(argv).stdout))


def validate_all(objects: Sequence[dict[str, Any]]) -> None:
    """Every object is valid, strictly (no unknown fields), for every tested Kubernetes version."""
    assert objects, "nothing rendered"
    for version in K8S_VERSIONS:
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
                pytest.fail(f"{name} invalid for Kubernetes {version}: {exc}")


def config_toml(configmap: dict[str, Any]) -> str:
    text = configmap["data"]["config.toml"]
    assert isinstance(text, str)
    return text


def check_config(toml_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the real `cleanup --check-config` on a rendered config.toml, with a clean environment."""
    path = tmp_path / "config.toml"
    path.write_text(toml_text, encoding="utf-8")
    cleanup = Path(sys.executable).with_name("cleanup")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return run([str(cleanup), "--check-config", "--config", str(path)], check=False, env=env)


def container(cronjob: dict[str, Any]) -> dict[str, Any]:
    containers = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def pod_spec(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def env_map(cronjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's env entries by name (names must be unique)."""
    entries = container(cronjob)["env"]
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {e["name"]: e for e in entries}


@pytest.fixture(params=HELMS)
def helm(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once with Helm 3 and once with Helm 4."""
    name: str = request.param
    tool(name)
    return name


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in SUMMARY:
        terminalreporter.write_line(line)
