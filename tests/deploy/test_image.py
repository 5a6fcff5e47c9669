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
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker

import cleanup
from tests.deploy.conftest import REPO, SUMMARY, run, tool
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
    """botocore and psycopg (the `all` extra) load, and S3/STS/SSO clients build, in the image."""
    # Clients are built offline from the API models kept in the image (S3, and STS for IRSA).
    code = (
        "import botocore.session, psycopg; session = botocore.session.get_session(); "
        "[session.create_client(s, region_name='eu-west-1') "
        "for s in ('s3', 'sts', 'sso', 'sso-oidc')]; "
        "print('ok')"
    )
    proc = locked_down(podman, image, ["-c", code], entrypoint="python3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def _normalized(pin: str) -> str:
    """`Name==version` with the name in its canonical form (PEP 503), as uv export writes it."""
    name, _, version = pin.partition("==")
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def test_image_holds_exactly_the_locked_packages(podman: Podman, image: str) -> None:
    """The image's venv holds the packages uv.lock pins for the `all` extra, at the locked
    versions, plus the project, and nothing else: no uv, pip or setuptools."""
    probe = (
        "import importlib.metadata as m, json, os, platform, shutil, sys\n"
        "env = {'implementation_name': sys.implementation.name, 'os_name': os.name,\n"
        "  'platform_machine': platform.machine(), 'platform_system': platform.system(),\n"
        "  'platform_python_implementation': platform.python_implementation(),\n"
        "  'python_full_version': platform.python_version(), 'sys_platform': sys.platform,\n"
        "  'python_version': '.'.join(platform.python_version_tuple()[:2])}\n"
        "dists = [f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions()]\n"
        "print(json.dumps({'env': env, 'dists': dists, 'uv': shutil.which('uv'),\n"
        "  'uv_venv': os.path.exists('/opt/uv')}))\n"
    )
    proc = locked_down(podman, image, ["-c", probe], entrypoint="python3")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    exported = run(
        [
            tool("uv"),
            "export",
            "--frozen",
            "--no-dev",
            "--extra",
            "all",
            "--no-emit-project",
            "--no-hashes",
            "--no-annotate",
            "--no-header",
            "--project",
            str(REPO),
        ]
    ).stdout
    locked = [f"cleanup=={cleanup.__version__}"]
    for line in exported.splitlines():
        requirement, _, marker = line.partition(" ; ")
        if not marker or Marker(marker).evaluate(found["env"]):
            locked.append(requirement)
    installed = sorted(_normalized(dist) for dist in found["dists"])
    assert installed == sorted(_normalized(req) for req in locked)
    assert (found["uv"], found["uv_venv"]) == (None, False)


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


def _old_tree(root: Path, names: Sequence[str]) -> list[Path]:
    """Files of 100 bytes under `root`, 30 days old."""
    now = time.time()
    paths = [root / name for name in names]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
        os.utime(path, (now - 30 * DAY, now - 30 * DAY))
    return paths


def test_image_capped_run_exits_3(podman: Podman, image: str, tmp_path: Path) -> None:
    """A capped run exits 3 inside the image (the code the chart's podFailurePolicy fails on),
    having deleted exactly max_deletions files."""
    data = tmp_path / "data"
    old = _old_tree(data, ["a.log", "b.log", "sub/c.log"])
    for path in [data, *data.rglob("*")]:
        os.chown(path, int(UID), int(UID))
    config = _write_config(
        tmp_path / "etc",
        'max_age = "7d"\nmax_deletions = 2\n[[volumes]]\nname = "data"\npath = "/data"\n',
    )
    proc = locked_down(
        podman, image, [], [f"{config}:/etc/cleanup/config.toml:ro", f"{data}:/data"]
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    summary = json_lines(proc.stdout)[-1]
    assert (summary["event"], summary["exit_code"]) == ("run_finished", 3)
    assert [t["status"] for t in summary["targets"]] == ["capped"]
    assert summary["deleted"] == 2
    assert len([p for p in old if p.exists()]) == 1


def _run_counters(summary: dict[str, Any]) -> list[dict[str, Any]]:
    keep = ("target", "status", "scanned", "matched", "failed", "bytes_freed")
    return [{k: t[k] for k in keep} for t in summary["targets"]]


def test_image_dry_run_on_read_only_mount_predicts_the_real_run(
    podman: Podman, image: str, tmp_path: Path
) -> None:
    """As the dry-run twin mounts it (read-only), a dry run as UID 10001 predicts what the real
    run on the read-write mount then does: same status, counters and exit code, nothing deleted."""
    data = tmp_path / "data"
    mine = _old_tree(data, ["mine/a.log", "mine/b.log"])
    theirs = _old_tree(data, ["theirs/c.log"])
    # `theirs` belongs to root, mode 0755: UID 10001 may not delete in it.
    for path in [data, data / "mine", *mine]:
        os.chown(path, int(UID), int(UID))
    (data / "theirs").chmod(0o755)
    config = _write_config(
        tmp_path / "etc", 'max_age = "7d"\n[[volumes]]\nname = "data"\npath = "/data"\n'
    )
    etc = f"{config}:/etc/cleanup/config.toml:ro"
    preview = locked_down(podman, image, ["--dry-run"], [etc, f"{data}:/data:ro"])
    assert [p for p in [*mine, *theirs] if not p.exists()] == []
    real = locked_down(podman, image, [], [etc, f"{data}:/data"])
    assert (preview.returncode, real.returncode) == (1, 1), preview.stdout + real.stdout
    predicted, happened = json_lines(preview.stdout), json_lines(real.stdout)
    assert _run_counters(predicted[-1]) == _run_counters(happened[-1])
    assert _run_counters(happened[-1])[0]["status"] == "partial"
    failed = [line for line in predicted if line["event"] == "item_failed"]
    assert [(line["path"], line.get("predicted")) for line in failed] == [
        ("/data/theirs/c.log", True)
    ]
    assert [p for p in mine if p.exists()] == [] and [p for p in theirs if not p.exists()] == []


def test_image_preflight_needs_a_writable_mount(podman: Podman, image: str, tmp_path: Path) -> None:
    """`--preflight` (what `helm test` runs) is ready on the job's read-write mount and not on a
    read-only one, and deletes nothing either way."""
    data = tmp_path / "data"
    old = _old_tree(data, ["a.log"])
    for path in [data, *old]:
        os.chown(path, int(UID), int(UID))
    config = _write_config(
        tmp_path / "etc", 'max_age = "7d"\n[[volumes]]\nname = "data"\npath = "/data"\n'
    )
    etc = f"{config}:/etc/cleanup/config.toml:ro"
    ready = locked_down(podman, image, ["--preflight"], [etc, f"{data}:/data"])
    refused = locked_down(podman, image, ["--preflight"], [etc, f"{data}:/data:ro"])
    assert (ready.returncode, refused.returncode) == (0, 1), ready.stdout + refused.stdout
    checks = [
        next(line for line in json_lines(p.stdout) if line["event"] == "preflight")
        for p in (ready, refused)
    ]
    assert [c["ready"] for c in checks] == [True, False]
    assert "read-only" in " ".join(checks[1]["problems"])
    assert [p for p in old if not p.exists()] == []


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
