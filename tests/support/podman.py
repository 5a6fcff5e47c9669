"""A podman store of the repository's own, a Debian bookworm base, and the test images.

No registry is reachable here, so every image starts from a base built with
debootstrap (cached as a tarball under .cache/image) and imported into a podman
store under .cache/containers/<driver> (other podman users on the machine are
untouched). The image test builds the real Dockerfile on that base; `--containers`
runs builds PostgreSQL 15 and moto images from scripts/containers/<name>/.
Each image is tagged with a hash of its recipe, so it is built once and again
only when its recipe changes.

For scripts/test.sh --containers: `python -m tests.support.podman prepare` builds
what is missing and prints `key=value` lines (storage driver, image names); `serve`
becomes the Docker-compatible API service on that store; `created` reads back from
the engine's events which containers it created. No pytest dependency; a failing
command raises PodmanError.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "image"
STORES = REPO / ".cache" / "containers"
RECIPES = REPO / "scripts" / "containers"
BASE_PACKAGES = ("python3", "python3-venv")
BASE_TAR = CACHE / f"bookworm-{'-'.join(BASE_PACKAGES)}.tar"
BASE_IMAGE = "localhost/cleanup-test-base:bookworm"
MIRROR = os.environ.get("DEBOOTSTRAP_MIRROR", "http://deb.debian.org/debian")
# Limits that work in this sandbox (podman's defaults exceed what it grants).
ULIMITS = ("nofile=8192:8192", "nproc=4096:4096")
# Build steps that pip install reach PyPI through a TLS-intercepting proxy: Debian's pip
# trusts /etc/ssl/certs, so the host's CAs are mounted there (only there: packages such
# as ssl-cert write into that directory).
CA_VOLUME = "/etc/ssl/certs:/etc/ssl/certs:ro"


class PodmanError(RuntimeError):
    """A podman (or debootstrap) command failed; the message carries its output."""


def run(argv: Sequence[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise PodmanError(
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}\n{proc.stdout}"
        )
    return proc


def containers_conf() -> Path:
    """The engine settings every podman call here uses (via CONTAINERS_CONF, not /etc).

    Containers created through the Docker-compatible API get no --ulimit or
    --runtime flags, so the limits and runtime live here; events go to a file
    of the store's own, which is where `podman events` reads them back.
    """
    STORES.mkdir(parents=True, exist_ok=True)
    path = STORES / "containers.conf"
    ulimits = ", ".join(f'"{u}"' for u in ULIMITS)
    text = (
        "# Written by tests/support/podman.py for this repository's own podman store.\n"
        f"[containers]\ndefault_ulimits = [{ulimits}]\n\n"
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
        f'events_logger = "file"\nevents_logfile_path = "{STORES / "events.log"}"\n'
    )
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


@dataclass(frozen=True)
class Podman:
    """podman on the store for one storage driver, with the engine settings above."""

    argv: tuple[str, ...]
    storage_driver: str

    def __call__(
        self, args: Sequence[str], check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": str(containers_conf())}
        return run([*self.argv, *args], check=check, timeout=timeout, env=env)


def _runroot(driver: str) -> Path:
    """The store's run directory: beside it, unless that path is too long for overlay
    ("the specified runroot is longer than 50 characters"), as it is in a deep checkout.
    Then a short path of this checkout's own (a run directory is volatile anyway)."""
    beside = STORES / driver / "run"
    if len(str(beside)) <= 50:
        return beside
    checkout = hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    return Path("/tmp") / f"cleanup-podman-run-{checkout}" / driver


def podman_with(driver: str) -> Podman:
    return Podman(
        (
            shutil.which("podman") or "podman",
            "--root",
            str(STORES / driver / "root"),
            "--runroot",
            str(_runroot(driver)),
            "--storage-driver",
            driver,
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
        ),
        driver,
    )


def debootstrap_base() -> None:
    """Create the cached base rootfs tarball (a minute or a few, once per machine)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = CACHE / "rootfs.partial"
    shutil.rmtree(rootfs, ignore_errors=True)
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    run(
        [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            "bookworm",
            str(rootfs),
            MIRROR,
        ],
        timeout=900,
    )
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    partial = BASE_TAR.with_suffix(".partial")
    run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."])
    partial.rename(BASE_TAR)  # a half-written tarball is never mistaken for a cache hit
    shutil.rmtree(rootfs)


def choose_podman() -> Podman:
    """The overlay store when the kernel allows it here, else vfs (slower, works everywhere),
    with the base image imported and proven to run."""
    if not BASE_TAR.exists():
        debootstrap_base()
    for driver in ("overlay", "vfs"):
        podman = podman_with(driver)
        if podman(["image", "exists", BASE_IMAGE], check=False).returncode != 0:
            imported = podman(["import", str(BASE_TAR), BASE_IMAGE], check=False)
            if imported.returncode != 0:
                continue
        probe = podman(
            [
                "run",
                "--rm",
                "--network=none",
                *(f"--ulimit={u}" for u in ULIMITS),
                BASE_IMAGE,
                "python3",
                "-c",
                "print('ok')",
            ],
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "ok":
            return podman
    raise PodmanError("podman can run the base image with neither the overlay nor the vfs driver")


def recipe_tag(recipe: Path, build_args: Mapping[str, str]) -> str:
    """A tag that changes whenever a file of the recipe, a build argument or the base does."""
    digest = hashlib.sha256(BASE_TAR.name.encode())
    for path in sorted(p for p in recipe.rglob("*") if p.is_file()):
        digest.update(b"\0" + str(path.relative_to(recipe)).encode() + b"\0" + path.read_bytes())
    for key, value in sorted(build_args.items()):
        digest.update(f"\0{key}={value}".encode())
    return digest.hexdigest()[:16]


def build_image(
    podman: Podman,
    name: str,
    build_args: Mapping[str, str] | None = None,
    volumes: Sequence[str] = (),
) -> str:
    """localhost/cleanup-test-<name>:<recipe hash>, built from scripts/containers/<name>
    on the base unless that exact tag exists; older tags of the image are removed."""
    recipe = RECIPES / name
    args = {"BASE_IMAGE": BASE_IMAGE, **(build_args or {})}
    repository = f"localhost/cleanup-test-{name}"
    image = f"{repository}:{recipe_tag(recipe, args)}"
    if podman(["image", "exists", image], check=False).returncode == 0:
        return image
    argv = [
        "build",
        *(f"--ulimit={u}" for u in ULIMITS),
        *(f"--volume={v}" for v in volumes),
        *(f"--build-arg={k}={v}" for k, v in args.items()),
        "--tag",
        image,
        "--file",
        str(recipe / "Containerfile"),
        str(recipe),
    ]
    podman(argv, timeout=1200)
    listed = podman(["images", "--format", "{{.Repository}}:{{.Tag}}", repository]).stdout
    stale = [line for line in listed.split() if line != image and line.startswith(repository)]
    if stale:
        podman(["rmi", *stale], check=False)
    return image


def build_test_images(podman: Podman) -> dict[str, str]:
    """The PostgreSQL 15 image and the S3 (moto) image, built when missing."""
    return {
        "postgres_image": build_image(podman, "postgres"),
        # The same moto the local fixtures run, so both paths test against one server.
        "s3_image": build_image(
            podman, "moto", {"MOTO_VERSION": metadata.version("moto")}, volumes=[CA_VOLUME]
        ),
    }


def prepare() -> None:
    """Build what is missing; print the storage driver and the image names as key=value."""
    podman = choose_podman()
    found = {"driver": podman.storage_driver, **build_test_images(podman)}
    for key, value in found.items():
        print(f"{key}={value}")


def serve(driver: str, url: str) -> None:
    """Become the Docker-compatible API service on `url` for the store of `driver`."""
    podman = podman_with(driver)
    os.environ["CONTAINERS_CONF"] = str(containers_conf())
    os.execv(podman.argv[0], [*podman.argv, "system", "service", "--time=0", url])


def created(driver: str, since: str, images: Sequence[str]) -> bool:
    """Print the containers the engine created since `since` (a Unix time); whether there is
    one of every image in `images` (proof that no fixture fell back to a local server)."""
    events = podman_with(driver)(
        [
            "events",
            "--stream=false",
            f"--since={since}",
            "--filter=type=container",
            "--filter=event=create",
            "--format={{.Time}} {{.Image}} {{.Name}}",
        ]
    ).stdout.splitlines()
    for line in events:
        print(f"podman created: {line}")
    seen = {line.split()[-2] for line in events if line.strip()}
    # A short name (postgres:15) is recorded as the engine resolved it (docker.io/library/...).
    missing = [i for i in images if not any(s == i or s.endswith("/" + i) for s in seen)]
    for image in missing:
        print(f"podman created no container of {image}", file=sys.stderr)
    return not missing


USAGE = """usage: python -m tests.support.podman prepare
       python -m tests.support.podman serve DRIVER URL
       python -m tests.support.podman created DRIVER SINCE [IMAGE...]"""


def main(argv: Sequence[str]) -> int:
    try:
        match argv:
            case ["prepare"]:
                prepare()
            case ["serve", driver, url]:
                serve(driver, url)
            case ["created", driver, since, *images]:
                return 0 if created(driver, since, images) else 1
            case _:
                print(USAGE, file=sys.stderr)
                return 2
    except PodmanError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
