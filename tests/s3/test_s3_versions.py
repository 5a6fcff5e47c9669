"""Versioned buckets: `versions = "current"` and `versions = "all"`, and per-key errors.

Objects get old the same way as in test_s3_sweep: written before `split_time(bucket)`,
with the run's clock injected so the cutoff falls exactly on the split.
Per-key errors are real: S3 Object Lock legal holds make the store refuse to
delete those versions inside an otherwise successful DeleteObjects call.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.s3.conftest import Bucket, run_at, s3_target, split_time, write_config
from tests.support.cli import run_cli
from tests.support.s3server import S3Endpoint


def _history(bucket: Bucket) -> None:
    """Old: v/a twice, v/b once then deleted (a delete marker), v/d once. Fresh: v/a, v/c."""
    bucket.enable_versioning()
    bucket.put(["v/a", "v/b", "v/d"], body=b"old")
    bucket.put(["v/a"], body=b"older2")
    bucket.client.delete_object(Bucket=bucket.name, Key="v/b")


def test_versions_current_deletes_old_current_objects_leaving_versions_and_markers(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """Only current objects count; deleting one adds a delete marker and keeps its versions."""
    _history(bucket)
    split = split_time(bucket)
    bucket.put(["v/a", "v/c"], body=b"new")
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "v/")])
    before, _ = bucket.versions("v/")

    result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert outputs["status"] == "ok", result.stdout
    assert (outputs["scanned"], outputs["matched"], outputs["deleted"]) == (3, 1, 1)
    versions, markers = bucket.versions("v/")
    assert versions == before
    assert {key for key, _ in markers} == {"v/b", "v/d"}
    assert bucket.object_keys("v/") == {"v/a", "v/c"}


def test_versions_all_removes_old_versions_and_markers_permanently(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """Every version and delete marker older than the cutoff goes for good; fresh versions stay."""
    _history(bucket)
    split = split_time(bucket)
    bucket.put(["v/a", "v/c"], body=b"new")
    config = write_config(
        tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "v/", versions="all")]
    )

    dry = run_cli(["--config", str(config), "--dry-run"], now=run_at(split))
    result = run_cli(["--config", str(config), "--log-level", "DEBUG"], now=run_at(split))

    assert dry.target("outputs")["matched"] == 5
    outputs = result.target("outputs")
    assert outputs["status"] == "ok", result.stdout
    # 6 versions + 1 delete marker listed; 4 old versions + the marker removed
    assert (outputs["scanned"], outputs["matched"], outputs["deleted"]) == (7, 5, 5)
    assert outputs["bytes_freed"] == 3 * 3 + 6
    versions, markers = bucket.versions("v/")
    assert markers == set()
    assert {key for key, _ in versions} == {"v/a", "v/c"}
    assert all(len(e["version_id"]) > 0 for e in result.events("item_deleted"))


def test_versions_all_legal_hold_per_key_error_counted_logged_and_partial(
    s3: S3Endpoint, locked_bucket: Bucket, tmp_path: Path
) -> None:
    """A version under legal hold fails inside DeleteObjects: it is logged with key, version
    and error, counted in `failed`, the others go, the target is `partial` and the run exits 1."""
    bucket = locked_bucket
    bucket.client.put_object(
        Bucket=bucket.name, Key="lk/held", Body=b"h", ObjectLockLegalHoldStatus="ON"
    )
    bucket.put([f"lk/free{i}" for i in range(4)])
    held = {v for v in bucket.versions("lk/")[0] if v[0] == "lk/held"}
    split = split_time(bucket)
    config = write_config(
        tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "lk/", versions="all")]
    )

    result = run_cli(["--config", str(config)], now=run_at(split))

    assert result.exit_code == 1, result.stdout
    outputs = result.target("outputs")
    assert outputs["status"] == "partial"
    assert (outputs["matched"], outputs["deleted"], outputs["failed"]) == (5, 4, 1)
    failed = result.events("item_failed")
    assert [(e["key"], e["error"], e["level"]) for e in failed] == [
        ("lk/held", "AccessDenied", "WARNING")
    ]
    assert {(failed[0]["key"], failed[0]["version_id"])} == held
    assert bucket.versions("lk/")[0] == held


def _locked_history(bucket: Bucket) -> set[tuple[str, str]]:
    """Under lk/: a version under legal hold, one under GOVERNANCE retention for 3 more days,
    three free ones and a deleted key (a free version and its delete marker). Returns the
    (key, version) pairs that Object Lock keeps."""
    client = bucket.client
    held = client.put_object(
        Bucket=bucket.name, Key="lk/held", Body=b"hold", ObjectLockLegalHoldStatus="ON"
    )
    kept = client.put_object(
        Bucket=bucket.name,
        Key="lk/kept",
        Body=b"keep",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=3),
    )
    bucket.put([f"lk/free{i}" for i in range(3)], body=b"fr")
    bucket.put(["lk/gone"], body=b"g")
    client.delete_object(Bucket=bucket.name, Key="lk/gone")
    return {("lk/held", held["VersionId"]), ("lk/kept", kept["VersionId"])}


def test_versions_all_dry_run_predicts_object_lock_failures_equal_to_the_real_run(
    s3: S3Endpoint, locked_bucket: Bucket, tmp_path: Path
) -> None:
    """On a bucket with Object Lock, the dry run predicts the versions under legal hold or
    unexpired retention as failed (`predicted`, AccessDenied, with the reason), so its
    counters, status and exit code equal those of the real run that follows."""
    bucket = locked_bucket
    locked = _locked_history(bucket)
    split = split_time(bucket)
    config = write_config(
        tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "lk/", versions="all")]
    )
    counters = ("scanned", "matched", "failed", "bytes_freed", "status")

    dry = run_cli(["--config", str(config), "--dry-run"], now=run_at(split))
    versions_after_dry = bucket.versions("lk/")
    real = run_cli(["--config", str(config)], now=run_at(split))

    preview, done = dry.target("outputs"), real.target("outputs")
    assert (dry.exit_code, real.exit_code) == (1, 1), dry.stdout
    assert {k: preview[k] for k in counters} == {k: done[k] for k in counters}
    assert (preview["status"], preview["matched"], preview["failed"]) == ("partial", 7, 2)
    assert (preview["deleted"], done["deleted"]) == (0, 5)
    assert dry.events("target_warning") == []  # the lock of every version could be read
    predicted = dry.events("item_failed")
    assert {(e["key"], e["version_id"]) for e in predicted} == locked
    assert all(e["predicted"] is True and e["error"] == "AccessDenied" for e in predicted)
    reasons = {e["key"]: e["reason"] for e in predicted}
    assert reasons["lk/held"] == "Object Lock legal hold"
    assert reasons["lk/kept"].startswith("Object Lock GOVERNANCE retention until ")
    assert {(e["key"], e["version_id"]) for e in real.events("item_failed")} == locked
    assert not any("predicted" in e for e in real.events("item_failed"))
    assert len(versions_after_dry[0]) == 6 and len(versions_after_dry[1]) == 1
    assert bucket.versions("lk/") == (locked, set())


def test_versions_current_on_object_lock_bucket_predicts_no_failure_delete_markers_allowed(
    s3: S3Endpoint, locked_bucket: Bucket, tmp_path: Path
) -> None:
    """With versions = "current" a delete only adds a delete marker, which Object Lock
    allows: the dry run predicts no failure and the real run deletes every old object."""
    bucket = locked_bucket
    locked = _locked_history(bucket)
    split = split_time(bucket)
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "lk/")])

    dry = run_cli(["--config", str(config), "--dry-run"], now=run_at(split))
    real = run_cli(["--config", str(config)], now=run_at(split))

    preview, done = dry.target("outputs"), real.target("outputs")
    assert (dry.exit_code, real.exit_code) == (0, 0), dry.stdout
    assert (preview["status"], preview["matched"], preview["failed"]) == ("ok", 5, 0)
    assert (done["status"], done["deleted"], done["failed"]) == ("ok", 5, 0)
    assert dry.events("item_failed") == []
    assert locked <= bucket.versions("lk/")[0]  # the locked versions stay, behind markers
    assert bucket.object_keys("lk/") == set()
