"""A real S3 API on loopback for tests, the demo and the benchmark.

`s3_server()` starts a container through testcontainers when a Docker daemon
answers, and always under `scripts/test.sh --containers` (which then never falls
back): $CLEANUP_TEST_S3_IMAGE, default MinIO; an image whose name contains "moto"
runs as moto's server (the script builds one). Otherwise it runs moto's server in
this process on a free 127.0.0.1 port. Tests written against the yielded
`S3Endpoint` run unchanged on each. `moto_process()` runs moto in its
own process, so a benchmark can measure the server's CPU apart from the client's.
Plain context managers: no pytest dependency. Every server stops on exit.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from tests.support import containers

ACCESS_KEY = "cleanup-test-key"
SECRET_KEY = "cleanup-test-secret"  # a throwaway credential of a loopback server
REGION = "us-east-1"
IMAGE_ENV = "CLEANUP_TEST_S3_IMAGE"
MINIO_IMAGE = "minio/minio:RELEASE.2024-11-07T00-52-20Z"


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    kind: str  # "moto" or "minio"
    pid: int | None = None  # the server's process, when it has its own
    seed_route: bool = True  # moto only: SEED_PATH is served (not by moto in a container)

    # Ambient settings that would send the default chain elsewhere than credentials_env().
    AMBIENT = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")

    def credentials_env(self) -> dict[str, str]:
        """What boto3's default chain (and rclone / s5cmd) read to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                s3={"addressing_style": "path"},
                max_pool_connections=32,
                retries={"mode": "standard", "max_attempts": 10},
                **config,
            ),
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def docker_answers() -> bool:
    """Whether a Docker daemon is reachable (MinIO is then used instead of moto)."""
    if os.environ.get("CLEANUP_TEST_S3") == "moto":
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def _wait_http(url: str, deadline_s: float) -> None:
    import urllib.error
    import urllib.request

    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


SEED_PATH = "/_cleanup/seed"


def _seeding_app(app: Any) -> Any:
    """moto's WSGI app plus one route that creates objects straight in moto's store.

    Seeding 200,000 objects over HTTP would take minutes of PUTs that no test or
    benchmark measures; the objects created here are ordinary moto objects (real
    LastModified, size, ETag), served and deleted through the S3 API like any other.
    """
    import json

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != SEED_PATH or environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        length = int(environ.get("CONTENT_LENGTH") or 0)
        order = json.loads(environ["wsgi.input"].read(length))
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        body = order["body"].encode("latin-1")
        keys = order.get("keys") or [
            f"{order['prefix']}{i:08d}" for i in range(int(order.get("count", 0)))
        ]
        for key in keys:
            backend.put_object(order["bucket"], key, body, disable_notification=True)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(keys)).encode()]

    return wsgi


def _moto_server(port: int) -> Any:
    import logging

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    # werkzeug's per-request log lines would drown the test output
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    class SeedingMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = _seeding_app(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return SeedingMotoServer(ip_address="127.0.0.1", port=port, verbose=False)


@contextmanager
def moto_thread() -> Iterator[S3Endpoint]:
    """moto's ThreadedMotoServer in this process, on a free loopback port."""
    server = _moto_server(0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Endpoint(f"http://{host}:{port}", "moto")
    finally:
        server.stop()


@contextmanager
def moto_process() -> Iterator[S3Endpoint]:
    """The same server in a child process (its CPU time is then its own)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.s3server", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/moto-api/", 30)
        yield S3Endpoint(url, "moto", pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _published(
    image: str, port: int, ready_path: str, command: str | None = None, **env: str
) -> Iterator[str]:
    """Start `image` (with `command`, `env`) and `port` published on a random loopback port;
    yield its URL once an HTTP request to `ready_path` is answered."""
    from testcontainers.core.container import DockerContainer

    def build(image: str) -> DockerContainer:
        container = DockerContainer(image, command=command, env=env)
        # docker-py's (address, None) form: loopback only, the port of Docker's choosing.
        container.ports = {str(port): (containers.LOOPBACK, None)}
        return container

    with containers.started("S3", image, build) as container:
        url = f"http://{containers.host_of(container)}:{container.get_exposed_port(port)}"
        _wait_http(url + ready_path, 60)
        yield url


@contextmanager
def minio_container(image: str = MINIO_IMAGE) -> Iterator[S3Endpoint]:
    """MinIO in a container (testcontainers)."""
    env = {"MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY}
    with _published(image, 9000, "/minio/health/live", "server /data", **env) as url:
        yield S3Endpoint(url, "minio")


@contextmanager
def moto_container(image: str) -> Iterator[S3Endpoint]:
    """moto's server in a container (scripts/containers/moto: port 5000, any credentials)."""
    with _published(image, 5000, "/moto-api/") as url:
        yield S3Endpoint(url, "moto", seed_route=False)


@contextmanager
def s3_server() -> Iterator[S3Endpoint]:
    """A container when Docker answers or containers are required, else moto in this process."""
    if containers.required() or docker_answers():
        image = containers.image(IMAGE_ENV, MINIO_IMAGE)
        start = moto_container if "moto" in image.rsplit("/", 1)[-1] else minio_container
        with start(image) as endpoint:
            yield endpoint
    else:
        with moto_thread() as endpoint:
            yield endpoint


def seed(
    endpoint: S3Endpoint,
    bucket: str,
    keys: list[str] | None = None,
    *,
    prefix: str = "",
    count: int = 0,
    body: bytes = b"x",
) -> None:
    """Create objects (`keys`, or `count` keys `prefix` + 8 digits) as fast as the server allows.

    On moto in this process through its seeding route, elsewhere (MinIO, moto in a
    container) with parallel PUTs. Seeding is never what a test or benchmark measures.
    """
    import json
    import urllib.request

    if keys is None:
        keys = [f"{prefix}{i:08d}" for i in range(count)]
    if endpoint.kind != "moto" or not endpoint.seed_route:
        put_many(endpoint.client(), bucket, keys, body)
        return
    for start in range(0, len(keys), 50_000):
        order = {
            "bucket": bucket,
            "keys": keys[start : start + 50_000],
            "body": body.decode("latin-1"),
        }
        request = urllib.request.Request(
            endpoint.url + SEED_PATH, data=json.dumps(order).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=600) as answer:
            answer.read()


def put_many(
    client: Any, bucket: str, keys: list[str], body: bytes = b"x", threads: int = 16
) -> None:
    """Create objects with parallel PUTs."""
    from concurrent.futures import ThreadPoolExecutor

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=body)

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(put, keys):
            pass


def clear_bucket(client: Any, bucket: str) -> None:
    """Remove every version, marker and the bucket itself (best effort, for reuse of names)."""
    with suppress(Exception):
        paginator = client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket):
            items = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if items:
                client.delete_objects(Bucket=bucket, Delete={"Objects": items, "Quiet": True})
        client.delete_bucket(Bucket=bucket)


def _serve(port: int) -> None:
    """Child-process entry of moto_process(): serve until terminated."""
    import signal
    import threading

    server = _moto_server(port)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
