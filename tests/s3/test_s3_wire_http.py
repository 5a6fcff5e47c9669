"""The S3 target's client over HTTP with its own XML (see test_s3_wire): DeleteObjects
sends botocore's body with checksums over it, awkward keys go exactly as the dry run
said, and a 200 answer that is an error or cut short is retried, not read as empty.

The server is a real S3 API (moto, or MinIO under --containers); faults come from
tests/support/faultproxy.py.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from cleanup.targets.s3 import wire
from cleanup.targets.s3.client import make_client
from cleanup.targets.s3.settings import S3Settings
from tests.s3.conftest import Bucket, run_at, s3_target, split_time, write_config
from tests.s3.test_s3_wire import ON_MOTO, botocore_delete_body
from tests.support.cli import run_cli
from tests.support.faultproxy import Request, Response, fault_proxy
from tests.support.s3server import S3Endpoint


def _capture(client: Any) -> list[tuple[bytes, dict[str, str]]]:
    sent: list[tuple[bytes, dict[str, str]]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append((bytes(request.body), dict(request.headers.items())))

    client.meta.events.register("before-send.s3.DeleteObjects", record)
    return sent


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def test_client_delete_objects_sends_botocores_body_with_checksums_over_it(
    s3: S3Endpoint, bucket: Bucket
) -> None:
    """Over HTTP, the target's client sends the body a plain botocore client sends, its
    checksum headers are computed over that body, and the server deletes those keys."""
    bucket.put(ON_MOTO)
    delete = {"Objects": [{"Key": k} for k in ON_MOTO], "Quiet": False}
    plain = s3.client()
    settings = S3Settings(name="t", bucket=bucket.name, prefix="x/", endpoint_url=s3.url)
    fast = make_client(settings, attempts=3, stop=threading.Event())
    plain_sent, fast_sent = _capture(plain), _capture(fast)

    plain.delete_objects(Bucket=bucket.name, Delete={"Objects": [{"Key": "nothing"}]})
    plain_body = botocore_delete_body(delete)
    answer = fast.delete_objects(Bucket=bucket.name, Delete=delete)

    assert plain_sent, "the plain client's request was not seen"
    body, headers = fast_sent[-1]
    assert body == plain_body
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    assert _header(headers, "content-md5") == md5
    crc = _header(headers, "x-amz-checksum-crc32")
    if crc is not None:
        assert crc == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert sorted(d["Key"] for d in answer["Deleted"]) == sorted(ON_MOTO)
    assert bucket.object_keys() == set()


@pytest.fixture
def wire_reads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each answer of the run was read by wire (True) or left to botocore."""
    reads: list[bool] = []
    original = wire.parse

    def spy(*args: Any) -> dict[str, Any] | None:
        parsed = original(*args)
        reads.append(parsed is not None)
        return parsed

    monkeypatch.setattr(wire, "parse", spy)
    return reads


@pytest.mark.parametrize("versions", ["current", "all"])
def test_run_with_awkward_keys_deletes_exactly_the_old_ones_as_the_dry_run_said(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path, versions: str, wire_reads: list[bool]
) -> None:
    """Old objects with awkward keys go, fresh ones with the same names under another
    folder stay, and the dry run named exactly what the real run deleted."""
    if versions == "all":
        bucket.enable_versioning()
    old = [f"out/{k}" for k in ON_MOTO]
    bucket.put(old)
    split = split_time(bucket)
    fresh = [f"out/fresh/{k}" for k in ON_MOTO]
    bucket.put([*fresh, "outside"])
    config = write_config(
        tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "out", versions=versions)]
    )

    debug = ["--config", str(config), "--log-level", "DEBUG"]
    dry = run_cli([*debug, "--dry-run"], now=run_at(split))
    real = run_cli(debug, now=run_at(split))

    predicted = {e["key"] for e in dry.events("item_would_delete")}
    deleted = {e["key"] for e in real.events("item_deleted")}
    assert real.exit_code == 0, real.stdout
    assert predicted == deleted == set(old)
    assert real.target("outputs")["deleted"] == len(old)
    assert bucket.object_keys() == set(fresh) | {"outside"}
    assert wire_reads and all(wire_reads), "some answer was not read by wire"


def _once(kind: Callable[[Request], bool], rewrite: Callable[[Response], Response]) -> Any:
    done: list[bool] = []

    def rule(request: Request, response: Response) -> Response:
        if done or not kind(request) or response.status != 200:
            return response
        done.append(True)
        return rewrite(response)

    rule.done = done  # type: ignore[attr-defined]
    return rule


def _is_listing(request: Request) -> bool:
    return request.method == "GET" and "list-type=2" in request.path


def _is_delete(request: Request) -> bool:
    return request.method == "POST" and "delete" in request.path.split("?", 1)[-1]


_ERROR_200 = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


@pytest.mark.parametrize(
    ("kind", "rewrite"),
    [
        (_is_listing, lambda r: Response(200, r.headers, _ERROR_200)),
        (_is_listing, lambda r: Response(200, r.headers, r.body[: len(r.body) // 2])),
        (_is_delete, lambda r: Response(200, r.headers, _ERROR_200)),
        (_is_delete, lambda r: Response(200, r.headers, r.body[: len(r.body) // 2])),
    ],
    ids=["listing error in 200", "listing cut short", "delete error in 200", "delete cut short"],
)
def test_run_retries_a_200_answer_that_is_an_error_or_cut_short(
    s3: S3Endpoint,
    bucket: Bucket,
    tmp_path: Path,
    kind: Callable[[Request], bool],
    rewrite: Callable[[Response], Response],
) -> None:
    """A 200 answer holding an <Error> document or cut short in transit is retried as
    botocore retries it, never read as an empty page or an empty result."""
    old = [f"out/{i:05d}" for i in range(2500)]
    bucket.put(old)
    split = split_time(bucket)
    bucket.put(["out/fresh"])
    rule = _once(kind, rewrite)

    with fault_proxy(s3.url, after=[rule]) as proxy:
        config = write_config(tmp_path / "c.toml", [s3_target(proxy.url, bucket.name, "out")])
        result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert rule.done, "the answer was not rewritten"
    assert result.exit_code == 0, result.stdout
    assert (outputs["status"], outputs["deleted"], outputs["failed"]) == ("ok", 2500, 0)
    assert bucket.object_keys() == {"out/fresh"}
