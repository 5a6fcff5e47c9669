"""The S3 target when the store misbehaves: throttling, a store ignoring the prefix,
an unreachable endpoint, a missing bucket.

Faults come from tests/support/faultproxy.py, a real HTTP proxy between the CLI
and the real S3 server: it answers some requests itself (503 SlowDown, per-key
SlowDown) so the server never sees them, or rewrites answers. Objects get old as
in test_s3_sweep (written before `split_time(bucket)`, run clock injected).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.s3.conftest import Bucket, run_at, s3_target, split_time, write_config
from tests.support.cli import run_cli
from tests.support.faultproxy import (
    delay_deletes,
    deny_listing,
    fault_proxy,
    inject_listing_key,
    per_key_slow_down,
    require_content_md5,
    slow_down,
)
from tests.support.s3server import S3Endpoint, free_port


def test_slowdown_503_on_a_third_of_requests_still_deletes_all_eligible_and_nothing_else(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """With 503 SlowDown for ~30% of list and delete requests, retries delete every old
    object under the prefix, keep the fresh and sibling ones, and report no failure."""
    old = [f"out/{i:05d}" for i in range(2500)]
    bucket.put(old)
    bucket.put(["out-archive/old"])
    split = split_time(bucket)
    bucket.put(["out/fresh"])

    with fault_proxy(s3.url, before=[slow_down(0.3)]) as proxy:
        config = write_config(tmp_path / "c.toml", [s3_target(proxy.url, bucket.name, "out")])
        result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert proxy.stats.faults > 0
    assert result.exit_code == 0, result.stdout
    assert (outputs["status"], outputs["deleted"], outputs["failed"]) == ("ok", 2500, 0)
    assert bucket.object_keys() == {"out/fresh", "out-archive/old"}


def test_per_key_slowdown_in_delete_answers_is_retried_until_every_key_goes(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """When half the DeleteObjects answers report SlowDown for every key (nothing deleted),
    those keys are resent and all 2,500 old objects go, with exact counters."""
    bucket.put([f"k/{i:05d}" for i in range(2500)], body=b"abcd")
    split = split_time(bucket)

    with fault_proxy(s3.url, before=[per_key_slow_down(0.5)]) as proxy:
        config = write_config(tmp_path / "c.toml", [s3_target(proxy.url, bucket.name, "k/")])
        result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert proxy.stats.faults > 0
    assert (outputs["status"], outputs["deleted"], outputs["failed"]) == ("ok", 2500, 0)
    assert outputs["bytes_freed"] == 10_000
    assert bucket.object_keys("k/") == set()


def test_store_requiring_content_md5_on_delete_objects_still_gets_deletes(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """A store that refuses DeleteObjects without Content-MD5 (Ceph RGW, older MinIO)
    still gets every old object deleted."""
    bucket.put([f"md5/{i}" for i in range(30)])
    split = split_time(bucket)

    with fault_proxy(s3.url, before=[require_content_md5()]) as proxy:
        config = write_config(tmp_path / "c.toml", [s3_target(proxy.url, bucket.name, "md5")])
        result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert proxy.stats.faults == 0, result.stdout
    assert (outputs["status"], outputs["deleted"]) == ("ok", 30)
    assert bucket.object_keys("md5/") == set()


def test_slow_store_progress_events_report_growing_counters(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """On a slow store, progress events appear every interval with counters that only grow
    and never pass the final ones."""
    bucket.put([f"p/{i:04d}" for i in range(3000)])
    split = split_time(bucket)

    with fault_proxy(s3.url, before=[delay_deletes(1.2)]) as proxy:
        config = write_config(
            tmp_path / "c.toml",
            [s3_target(proxy.url, bucket.name, "p/")],
            progress_interval="1s",
        )
        result = run_cli(["--config", str(config)], now=run_at(split))

    progress = result.events("progress")
    final = result.target("outputs")
    assert final["deleted"] == 3000, result.stdout
    assert len(progress) >= 1
    deleted = [event["deleted"] for event in progress]
    assert deleted == sorted(deleted)
    assert all(event["scanned"] <= final["scanned"] for event in progress)
    assert all(event["target"] == "outputs" and event["kind"] == "s3" for event in progress)


def test_listing_key_outside_prefix_fails_target_and_deletes_nothing_outside(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """A store that answers with a key outside the prefix fails the target; that key stays."""
    bucket.put(["out/a", "out-archive/victim"])
    split = split_time(bucket)

    with fault_proxy(s3.url, after=[inject_listing_key("out-archive/victim")]) as proxy:
        config = write_config(tmp_path / "c.toml", [s3_target(proxy.url, bucket.name, "out")])
        result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert outputs["status"] == "failed", result.stdout
    assert "outside the prefix" in outputs["error"]
    assert "out-archive/victim" in bucket.object_keys()


def test_unreachable_endpoint_fails_s3_target_and_volume_target_still_runs(
    tmp_path: Path,
) -> None:
    """A closed port fails the S3 target with a message naming bucket and endpoint;
    the volume target beside it still sweeps, and the run exits 1."""
    volume = tmp_path / "vol"
    volume.mkdir()
    old_file = volume / "old.tmp"
    old_file.write_text("x")
    past = time.time() - 10 * 86400
    os.utime(old_file, (past, past))
    port = free_port()
    config = write_config(
        tmp_path / "c.toml",
        [
            ("volumes", {"name": "temp", "path": str(volume), "max_age": "1d"}),
            s3_target(f"http://127.0.0.1:{port}", "media", "output/"),
        ],
    )

    began = time.monotonic()
    result = run_cli(["--config", str(config)])
    took = time.monotonic() - began

    assert result.exit_code == 1, result.stdout
    s3 = result.target("outputs")
    assert s3["status"] == "failed"
    assert "s3://media/output/" in s3["error"]
    assert f"127.0.0.1:{port}" in s3["error"]
    assert "unreachable" in s3["error"]
    assert result.target("temp")["status"] == "ok"
    assert not old_file.exists()
    assert [t["status"] for t in result.summary["targets"]] == ["ok", "failed"]
    assert took < 30


def test_missing_bucket_fails_target_with_bucket_name_and_s3_code(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """Listing a bucket that does not exist fails the target with NoSuchBucket and its name."""
    config = write_config(
        tmp_path / "c.toml", [s3_target(s3.url, "no-such-bucket-here", "output/")]
    )

    result = run_cli(["--config", str(config)])

    outputs = result.target("outputs")
    assert result.exit_code == 1
    assert outputs["status"] == "failed"
    assert "NoSuchBucket" in outputs["error"]
    assert "s3://no-such-bucket-here/output/" in outputs["error"]
    assert "cleanup-test" not in result.stdout  # no credential in any line


def test_listing_access_denied_fails_target_with_code_and_policy_hint(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """A store refusing the listing (no s3:ListBucket) fails the target with AccessDenied,
    the bucket and a pointer to the IAM policy; nothing is deleted."""
    bucket.put(["out/a"])
    split = split_time(bucket)

    with fault_proxy(s3.url, before=[deny_listing()]) as proxy:
        config = write_config(tmp_path / "c.toml", [s3_target(proxy.url, bucket.name, "out")])
        result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert result.exit_code == 1
    assert outputs["status"] == "failed"
    assert f"s3://{bucket.name}/out/" in outputs["error"]
    assert "AccessDenied" in outputs["error"]
    assert "IAM policy" in outputs["error"]
    assert bucket.object_keys() == {"out/a"}
