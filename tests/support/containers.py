"""What the server helpers share when they run their server in a container (testcontainers).

`required()` is true under `scripts/test.sh --containers` (CLEANUP_TEST_CONTAINERS=1):
then a server that cannot start its container fails, it never falls back to the
local binaries. `image()` reads an image name from its override variable.
`started()` starts a container and makes sure it never outlives this process,
even one killed by SIGKILL: a watchdog child removes it once this process is gone
(what Ryuk does on Docker, where Ryuk may be disabled, as it is on podman).
No pytest dependency.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

MODE_ENV = "CLEANUP_TEST_CONTAINERS"
LOOPBACK = "127.0.0.1"

# Reads until EOF, which comes when every copy of the pipe's write end is closed: on
# exit or on death of its owner. Its own session, so a Ctrl-C to the tests spares it.
_WATCHDOG = """
import sys
import docker
sys.stdin.buffer.read()
try:
    docker.from_env(timeout=30).containers.get(sys.argv[1]).remove(force=True, v=True)
except docker.errors.NotFound:
    pass
"""


class ContainerStartError(RuntimeError):
    """A server's container did not start (a failure, never a reason to fall back)."""


def required() -> bool:
    """Whether servers must run in containers (scripts/test.sh --containers)."""
    return os.environ.get(MODE_ENV, "") not in ("", "0")


def image(env: str, default: str) -> str:
    """The image named by the variable `env`, else `default` (the official image)."""
    return os.environ.get(env) or default


def host_of(container: Any) -> str:
    """The address to reach the container's published ports (published on loopback only)."""
    host = str(container.get_container_host_ip())
    return LOOPBACK if host == "localhost" else host


@contextmanager
def started(what: str, image: str, build: Callable[[str], Any]) -> Iterator[Any]:
    """Start the container that `build(image)` makes (a testcontainers DockerContainer),
    yield it, then remove it. Any failure to start raises ContainerStartError."""
    container = None
    try:
        container = build(image)  # connects to the engine already
        container.start()
    except Exception as exc:
        if container is not None:
            with suppress(Exception):  # created but never ready: do not leave it running
                container.stop()
        raise ContainerStartError(f"the {what} container ({image}) did not start: {exc}") from exc
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, container.get_wrapped_container().id],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield container
    finally:
        try:
            container.stop()
        finally:
            # Removed already: the watchdog finds nothing left to do and exits.
            assert watchdog.stdin is not None
            watchdog.stdin.close()
            try:
                watchdog.wait(timeout=30)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()
