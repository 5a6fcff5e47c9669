"""The container image, built from the repository's Dockerfile with podman and run locked down.

No Docker engine and no registry here: the test builds the Dockerfile on the Debian
bookworm base that tests/support/podman.py debootstraps (cached under .cache/image)
and imports into the repository's own podman store (shared with the --containers
run's images), passed as BASE_IMAGE. Settings that work in this sandbox: runtime
runc, ulimits nofile=8192 and nproc=4096, cgroupfs, and the host CA bundle mounted
read-only into build steps (pip behind a TLS-intercepting proxy).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import REPO, SUMMARY
from tests.support.podman import (
    BASE_IMAGE,
    CA_VOLUME,
    ULIMITS,
    Podman,
    PodmanError,
    choose_podman,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

IMAGE = "localhost/cleanup:test"
UID = "10001"
DAY = 86400


@pytest.fixture(scope="module")
def podman() -> Podman:
    try:
        return choose_podman()
    except PodmanError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    """Build the real Dockerfile on the local base; print build time and image size."""
    began = time.monotonic()
    podman(
        [
            "build",
            *(f"--ulimit={u}" for u in ULIMITS),
            f"--volume={CA_VOLUME}",
            f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
            "--tag",
            IMAGE,
            "--file",
            str(REPO / "Dockerfile"),
            str(REPO),
        ],
        timeout=1200,
    )
    built = time.monotonic() - began
    sizes = {
        name: int(podman(["image", "inspect", "--format", "{{.Size}}", name]).stdout)
        for name in (IMAGE, BASE_IMAGE)
    }
    line = (
        f"image {IMAGE}: {sizes[IMAGE] / 1e6:.1f} MB on the debootstrap bookworm base "
        f"({sizes[BASE_IMAGE] / 1e6:.1f} MB), so {(sizes[IMAGE] - sizes[BASE_IMAGE]) / 1e6:.1f} MB "
        f"added by the Dockerfile; build {built:.0f}s, storage driver {podman.storage_driver}"
    )
    print(line)
    SUMMARY.append(line)
    return IMAGE


def locked_down(
    podman: Podman,
    image: str,
    args: Sequence[str],
    volumes: Sequence[str] = (),
    entrypoint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the image as UID 10001, read-only root, no capabilities, no network, no tmpfs."""
    argv = [
        "run",
        "--rm",
        "--read-only",
        # No writable /tmp, /run or /var/tmp either: proves nothing writes at all.
        "--read-only-tmpfs=false",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--user={UID}:{UID}",
        "--network=none",
        "--ulimit=nofile=8192:8192",
        "--ulimit=nproc=4096:4096",
    ]
    for volume in volumes:
        argv.append(f"--volume={volume}")
    if entrypoint is not None:
        argv.append(f"--entrypoint={entrypoint}")
    return podman([*argv, image, *args], check=False, timeout=120)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_image_metadata_runs_as_10001_with_cleanup_entrypoint(podman: Podman, image: str) -> None:
    """The image config says USER 10001:10001, ENTRYPOINT ["cleanup"] and carries OCI labels."""
    config = json.loads(podman(["image", "inspect", image]).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["cleanup"]
    assert config["Labels"]["org.opencontainers.image.title"] == "cleanup"
    assert "org.opencontainers.image.version" in config["Labels"]


def test_image_version_runs_locked_down(podman: Podman, image: str) -> None:
    """`--version` works as UID 10001 on a read-only root with all capabilities dropped."""
    proc = locked_down(podman, image, ["--version"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cleanup 0.1.0"


def test_image_ships_s3_and_postgres_drivers(podman: Podman, image: str) -> None:
    """boto3 and psycopg (the `all` extra) load, and S3/STS/SSO clients build, in the image."""
    # Clients are built offline from the API models kept in the image (S3, and STS for IRSA).
    code = (
        "import boto3, psycopg; "
        "[boto3.client(s, region_name='eu-west-1') for s in ('s3', 'sts', 'sso', 'sso-oidc')]; "
        "print('ok')"
    )
    proc = locked_down(podman, image, ["-c", code], entrypoint="python3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def _write_config(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(body)
    path.chmod(0o644)
    return path


def test_image_check_config_reads_mounted_config(
    podman: Podman, image: str, tmp_path: Path
) -> None:
    """`--check-config` validates the config mounted at the default path and prints it as JSON."""
    config = _write_config(
        tmp_path / "etc",
        '[[volumes]]\nname = "temp"\npath = "/data/temp"\nmax_age = "2d"\n',
    )
    proc = locked_down(podman, image, ["--check-config"], [f"{config}:/etc/cleanup/config.toml:ro"])
    assert proc.returncode == 0, proc.stderr
    effective = json.loads(proc.stdout)
    assert effective["config_file"] == "/etc/cleanup/config.toml"
    assert effective["targets"] == ["temp"]
    assert effective["volumes"][0]["max_age_seconds"] == 2 * DAY


def test_image_bad_config_exits_2(podman: Podman, image: str, tmp_path: Path) -> None:
    """A config error exits 2 inside the image (the code the chart's podFailurePolicy fails on)."""
    config = _write_config(tmp_path / "etc", 'max_age = "7 days"\n')
    proc = locked_down(podman, image, [], [f"{config}:/etc/cleanup/config.toml:ro"])
    assert proc.returncode == 2, proc.stdout + proc.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_image_sweeps_mounted_volume(
    podman: Podman, image: str, tmp_path: Path, workers: int
) -> None:
    """A real run deletes exactly the old files of a mounted volume and logs the summary,
    also with worker processes inside the locked-down container."""
    data = tmp_path / "data"
    old = [data / "old-1.log", data / "nested" / "old-2.bin", data / "nested" / "deep" / "old-3"]
    fresh = [data / "fresh.log", data / "nested" / "fresh.bin", data / "keep.lock"]
    now = time.time()
    for path in old + fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    for path in [*old, data / "keep.lock"]:
        os.utime(path, (now - 30 * DAY, now - 30 * DAY))
    for path in [data, *data.rglob("*")]:
        os.chown(path, int(UID), int(UID))
    config = _write_config(
        tmp_path / "etc",
        'max_age = "7d"\n\n[[volumes]]\nname = "data"\npath = "/data"\nexclude = ["*.lock"]\n'
        f"workers = {workers}\n",
    )
    proc = locked_down(
        podman,
        image,
        ["--log-level", "DEBUG"],
        [f"{config}:/etc/cleanup/config.toml:ro", f"{data}:/data"],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = json_lines(proc.stdout)
    summary = lines[-1]
    assert summary["event"] == "run_finished"
    assert (summary["status"], summary["exit_code"], summary["dry_run"]) == ("ok", 0, False)
    assert (summary["matched"], summary["deleted"], summary["failed"]) == (3, 3, 0)
    assert summary["bytes_freed"] == 300
    assert [{k: v for k, v in t.items() if k != "duration_s"} for t in summary["targets"]] == [
        {
            "target": "data",
            "kind": "volumes",
            "status": "ok",
            "scanned": 5,
            "matched": 3,
            "deleted": 3,
            "failed": 0,
            "bytes_freed": 300,
        }
    ]
    deleted = sorted(line["path"] for line in lines if line["event"] == "item_deleted")
    assert deleted == sorted(f"/data/{p.relative_to(data)}" for p in old)
    assert [p for p in old if p.exists()] == []
    assert [p for p in fresh if not p.exists()] == []


def test_image_bytecode_precompiled_unchecked(podman: Podman, image: str) -> None:
    """Every .py in the venv has an unchecked-hash .pyc built at image build time."""
    code = (
        "import importlib.util, pathlib, sys\n"
        "missing = []\n"
        "for src in pathlib.Path('/opt/venv/lib').rglob('*.py'):\n"
        "    pyc = pathlib.Path(importlib.util.cache_from_source(str(src)))\n"
        "    flags = int.from_bytes(pyc.read_bytes()[4:8], 'little') if pyc.exists() else None\n"
        "    if flags != 1:\n"  # 1 = hash-based, source not checked
        "        missing.append(f'{src} {flags}')\n"
        "print(len(missing)); print('\\n'.join(missing[:20]))\n"
    )
    proc = locked_down(podman, image, ["-c", code], entrypoint="python3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "0", proc.stdout
