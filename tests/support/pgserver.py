"""A throwaway PostgreSQL server for tests, the demo and benchmarks.

`postgres_server()` yields a DSN (`postgresql://user:password@127.0.0.1:port/db`).
When a Docker daemon answers, and always under `scripts/test.sh --containers`
(which then never falls back), it uses testcontainers' PostgresContainer with
$CLEANUP_TEST_POSTGRES_IMAGE (default postgres:15); otherwise it starts a
private cluster from the local binaries (`/usr/lib/postgresql/15/bin`, or
`$PG_BIN`) in a temp dir, listening on 127.0.0.1 on a free port with its unix
socket in the temp dir. initdb refuses to run as root, so as root the cluster
runs as `nobody`. The postmaster gets SIGINT (fast shutdown) if this process
dies, and a container is removed, so neither outlives its user.
Plain context manager: no pytest dependency.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support import containers

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
IMAGE_ENV = "CLEANUP_TEST_POSTGRES_IMAGE"
IMAGE = "postgres:15"
USER = "cleanup_admin"
DATABASE = "postgres"
# Speed over durability: a test cluster is thrown away anyway.
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
}
UNPRIVILEGED = "nobody"


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no daemon, no socket, permission denied: all mean "no Docker"
        return False


_PORT_ATTEMPTS = 5


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binaries() -> Path:
    """$PG_BIN, else /usr/lib/postgresql/15/bin, else the newest installed major version."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates = [Path(DEFAULT_BIN), *installed]
    for bindir in candidates:
        if (bindir / "initdb").exists():
            return bindir
    raise RuntimeError("no PostgreSQL binaries found (install postgresql-15, or set PG_BIN)")


def _as_user(argv: list[str]) -> list[str]:
    """Run argv as an unprivileged user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return argv
    return [
        "setpriv",
        f"--reuid={UNPRIVILEGED}",
        "--regid=nogroup",
        "--clear-groups",
        "--pdeathsig=SIGINT",
        "--",
        *argv,
    ]


def _wait_ready(dsn: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {proc.returncode}: {log.read_text()}")
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {log.read_text()}") from None
            time.sleep(0.1)


@contextlib.contextmanager
def _local_server(settings: Mapping[str, str]) -> Iterator[str]:
    bindir = _binaries()
    # As root the cluster runs as `nobody`, which must be able to reach its directory:
    # /tmp is world-traversable where a private $TMPDIR may not be.
    root = Path(tempfile.mkdtemp(prefix="cleanup-pg-", dir="/tmp" if os.geteuid() == 0 else None))
    password = secrets.token_hex(16)
    proc: subprocess.Popen[bytes] | None = None
    try:
        data, pwfile, log = root / "data", root / "pwfile", root / "server.log"
        pwfile.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(root, UNPRIVILEGED)
            shutil.chown(pwfile, UNPRIVILEGED)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        subprocess.run(
            _as_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            env=env,
        )
        # PostgreSQL cannot listen on port 0 and report the port: it gets a port that was
        # free a moment ago, and when another process took it meanwhile, the next one.
        for attempt in range(_PORT_ATTEMPTS):
            port = _free_port()
            options = {
                "listen_addresses": "127.0.0.1",
                "port": str(port),
                "unix_socket_directories": str(root),
                **FAST_SETTINGS,
                **settings,
            }
            argv = [str(bindir / "postgres"), "-D", str(data)]
            for key, value in options.items():
                argv += ["-c", f"{key}={value}"]
            with open(log, "wb") as log_handle:
                proc = subprocess.Popen(
                    _as_user(argv), stdout=log_handle, stderr=subprocess.STDOUT, env=env
                )
            dsn = f"postgresql://{USER}:{password}@127.0.0.1:{port}/{DATABASE}"
            try:
                _wait_ready(dsn, proc, log, timeout=30)
                break
            except RuntimeError:
                taken = "Address already in use" in log.read_text(errors="replace")
                if proc.poll() is None or not taken or attempt + 1 == _PORT_ATTEMPTS:
                    raise
        yield dsn
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients, no waiting
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _container_server(settings: Mapping[str, str]) -> Iterator[str]:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers before the community/ layout
        from testcontainers.postgres import PostgresContainer

    password = secrets.token_hex(16)
    command = " ".join(f"-c {k}={v}" for k, v in {**FAST_SETTINGS, **settings}.items())

    def build(image: str) -> PostgresContainer:
        container = PostgresContainer(
            image, username=USER, password=password, dbname=DATABASE, driver=None
        ).with_command(command)
        # Publish on the loopback interface only (docker-py's (address, port) form; a
        # None port lets Docker pick a free one), never on every interface of the host.
        container.ports = {"5432": (containers.LOOPBACK, None)}
        return container

    image = containers.image(IMAGE_ENV, IMAGE)
    with containers.started("PostgreSQL", image, build) as container:
        host = containers.host_of(container)
        port = container.get_exposed_port(5432)
        yield f"postgresql://{USER}:{password}@{host}:{port}/{DATABASE}"


@contextlib.contextmanager
def postgres_server(settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """A running PostgreSQL (14+ for TID range scans); yields a superuser DSN."""
    extra = dict(settings or {})
    if containers.required() or _docker_answers():
        with _container_server(extra) as dsn:
            yield dsn
    else:
        with _local_server(extra) as dsn:
            yield dsn


if __name__ == "__main__":
    with postgres_server() as url:
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
