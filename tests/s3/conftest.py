"""Fixtures of the S3 tests: one real S3 server per session, a fresh bucket per test.

Boto3 reads credentials from the process environment (the default chain), so the
server's throwaway credentials are put there for the session; the CLI's own
settings still come from the explicit mapping given to run_cli.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.s3server import S3Endpoint, s3_server, seed

MAX_AGE = timedelta(days=1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "moto_only(reason): needs what only moto does; skipped on MinIO"
    )


@pytest.fixture(autouse=True)
def _moto_only(request: pytest.FixtureRequest) -> None:
    """Skip a `moto_only` test when the session's S3 server is not moto (MinIO under Docker)."""
    marker = request.node.get_closest_marker("moto_only")
    if marker is not None and request.getfixturevalue("s3").kind != "moto":
        pytest.skip(f"moto only: {marker.args[0]}")


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Endpoint]:
    with s3_server() as endpoint, pytest.MonkeyPatch.context() as patch:
        for name in endpoint.AMBIENT:
            patch.delenv(name, raising=False)
        for name, value in endpoint.credentials_env().items():
            patch.setenv(name, value)
        yield endpoint


@dataclass
class Bucket:
    name: str
    client: Any
    endpoint: S3Endpoint

    def put(self, keys: list[str], body: bytes = b"x") -> None:
        seed(self.endpoint, self.name, keys, body=body)

    def object_keys(self, prefix: str = "") -> set[str]:
        found: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        ):
            found.update(obj["Key"] for obj in page.get("Contents", []))
        return found

    def versions(self, prefix: str = "") -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """(versions, delete markers) under `prefix`, as (key, version id) pairs."""
        versions: set[tuple[str, str]] = set()
        markers: set[tuple[str, str]] = set()
        for page in self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.name, Prefix=prefix
        ):
            versions.update((v["Key"], v["VersionId"]) for v in page.get("Versions", []))
            markers.update((m["Key"], m["VersionId"]) for m in page.get("DeleteMarkers", []))
        return versions, markers

    def enable_versioning(self) -> None:
        self.client.put_bucket_versioning(
            Bucket=self.name, VersioningConfiguration={"Status": "Enabled"}
        )


_CLOCKS: dict[str, str] = {}  # endpoint URL -> the bucket whose probe reads the store's clock


def split_time(bucket: Bucket) -> datetime:
    """An instant of the store's own clock later than every object in `bucket` so far.

    Objects written before the call have LastModified < the returned instant, objects
    written after have LastModified >= it, whatever the store's timestamp resolution: a
    probe object, in a bucket of its own, is written until the store dates it later than
    the newest object here (a wait on the store's clock, not on this process's). A run
    whose clock reads `split + MAX_AGE` has its cutoff exactly at the split.
    """
    client = bucket.client
    stamps = [
        entry["LastModified"]
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket.name)
        for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
    ]
    newest = max(stamps, default=None)
    clock = _CLOCKS.get(bucket.endpoint.url)
    if clock is None:
        clock = _CLOCKS[bucket.endpoint.url] = f"clock-{uuid.uuid4().hex[:20]}"
        client.create_bucket(Bucket=clock)
    deadline = time.monotonic() + 30
    while True:
        client.put_object(Bucket=clock, Key="probe", Body=b"")
        stamp: datetime = client.head_object(Bucket=clock, Key="probe")["LastModified"]
        if newest is None or stamp > newest:
            return stamp.astimezone(UTC)
        assert time.monotonic() < deadline, "the store's clock did not move on in 30 s"
        time.sleep(0.02)


def run_at(split: datetime) -> datetime:
    """The run clock that puts the cutoff (clock - MAX_AGE) exactly at `split`."""
    return split + MAX_AGE


@pytest.fixture
def bucket(s3: S3Endpoint) -> Bucket:
    client = s3.client()
    name = f"t-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=name)
    return Bucket(name, client, s3)


@pytest.fixture
def locked_bucket(s3: S3Endpoint) -> Bucket:
    """A bucket with S3 Object Lock (hence versioned), where legal holds block deletion."""
    client = s3.client()
    name = f"l-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return Bucket(name, client, s3)


def write_config(path: Path, targets: list[tuple[str, dict[str, Any]]], **top: Any) -> Path:
    """A TOML config file; values are written as JSON, which TOML reads the same for these types."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in top.items()]
    for kind, table in targets:
        lines.append(f"[[{kind}]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def s3_target(
    endpoint_url: str, bucket: str, prefix: str, **extra: Any
) -> tuple[str, dict[str, Any]]:
    table = {
        "name": "outputs",
        "bucket": bucket,
        "prefix": prefix,
        "max_age": "1d",
        "endpoint_url": endpoint_url,
        **extra,
    }
    return ("s3", table)
