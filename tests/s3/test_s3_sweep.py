"""The S3 target against a real S3 API over HTTP (MinIO when Docker answers, else moto).

How objects get old: neither moto's server nor MinIO lets a client set
LastModified, and a server's clock cannot be frozen from outside. So each test
writes its "old" objects, waits for the next whole second (`split_time`), writes
its "fresh" objects, and runs the CLI with an injected clock of `split + 1 day`
and `max_age = "1d"`. The cutoff is then exactly the split instant: objects
written before it are strictly older (eligible), objects written after it are not.
Every object is real and every deletion is checked by listing the bucket again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.s3.conftest import Bucket, run_at, s3_target, split_time, write_config
from tests.support.cli import run_cli
from tests.support.s3server import S3Endpoint


@pytest.mark.moto_only("MinIO does not list keys under 'output/' beside an object 'output'")
def test_sweep_old_objects_under_prefix_deleted_fresh_and_outside_kept(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """Old objects under the prefix go; fresh ones, sibling prefixes and other keys stay."""
    old = [f"output/job{i}/result.bin" for i in range(5)]
    bucket.put(old, body=b"12345")
    bucket.put(["output-archive/old.bin", "outputx", "other/old.bin", "output"])
    split = split_time(bucket)
    bucket.put(["output/fresh.bin"])
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "output")])

    result = run_cli(["--config", str(config)], now=run_at(split))

    assert result.exit_code == 0, result.stdout
    outputs = result.target("outputs")
    assert outputs["status"] == "ok"
    assert (outputs["scanned"], outputs["matched"], outputs["deleted"]) == (6, 5, 5)
    assert outputs["failed"] == 0
    assert outputs["bytes_freed"] == 25
    assert bucket.object_keys() == {
        "output/fresh.bin",
        "output-archive/old.bin",
        "outputx",
        "other/old.bin",
        "output",
    }


def test_sweep_excludes_name_and_path_globs_kept_and_not_scanned(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """Name globs match the last key component, path globs the key relative to the prefix."""
    bucket.put(
        [
            "data/a.bin",
            "data/run.lock",
            "data/sub/deep.lock",
            "data/keep/one.bin",
            "data/sub/keep/two.bin",
        ]
    )
    split = split_time(bucket)
    target = s3_target(s3.url, bucket.name, "data/", exclude=["*.lock", "keep/*"])
    config = write_config(tmp_path / "c.toml", [target])

    result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert outputs["status"] == "ok", result.stdout
    # keep/* is anchored at the prefix: sub/keep/two.bin is not excluded by it.
    assert (outputs["scanned"], outputs["deleted"]) == (2, 2)
    assert bucket.object_keys() == {"data/run.lock", "data/sub/deep.lock", "data/keep/one.bin"}


def test_sweep_many_batches_dry_run_predicts_then_real_run_deletes_exactly_that(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """2,600 old objects (three DeleteObjects batches): the dry run deletes nothing and
    predicts counts and bytes, the real run deletes exactly what was predicted."""
    old = [f"out/{i:05d}" for i in range(2600)]
    bucket.put(old, body=b"ab")
    split = split_time(bucket)
    bucket.put([f"out/fresh{i}" for i in range(3)])
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "out/")])

    dry = run_cli(["--config", str(config), "--dry-run", "--log-level", "DEBUG"], now=run_at(split))

    dry_target = dry.target("outputs")
    assert dry.exit_code == 0, dry.stdout
    assert (dry_target["scanned"], dry_target["matched"], dry_target["deleted"]) == (2603, 2600, 0)
    assert dry_target["bytes_freed"] == 5200
    would = dry.events("item_would_delete")
    assert {line["key"] for line in would} == set(old)
    assert len(bucket.object_keys("out/")) == 2603

    real = run_cli(["--config", str(config)], now=run_at(split))

    real_target = real.target("outputs")
    assert real.exit_code == 0, real.stdout
    assert real_target["deleted"] == dry_target["matched"]
    assert real_target["bytes_freed"] == dry_target["bytes_freed"]
    assert bucket.object_keys("out/") == {f"out/fresh{i}" for i in range(3)}


def test_sweep_cap_with_batches_in_flight_deletes_exactly_max_deletions(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """With 3,500 eligible objects (four concurrent batches) and a cap of 2,345,
    exactly 2,345 go, the target is `capped` and the run exits 3."""
    bucket.put([f"cap/{i:05d}" for i in range(3500)])
    split = split_time(bucket)
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "cap/")])

    result = run_cli(["--config", str(config), "--max-deletions", "2345"], now=run_at(split))

    outputs = result.target("outputs")
    assert result.exit_code == 3, result.stdout
    assert outputs["status"] == "capped"
    assert (outputs["matched"], outputs["deleted"]) == (2345, 2345)
    assert len(bucket.object_keys("cap/")) == 3500 - 2345


def test_sweep_dry_run_with_cap_predicts_the_capped_count(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """A capped dry run predicts exactly the cap and deletes nothing."""
    bucket.put([f"cap/{i:04d}" for i in range(1500)])
    split = split_time(bucket)
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "cap/")])

    result = run_cli(
        ["--config", str(config), "--max-deletions", "1200", "--dry-run"], now=run_at(split)
    )

    outputs = result.target("outputs")
    assert outputs["status"] == "capped"
    assert (outputs["matched"], outputs["deleted"]) == (1200, 0)
    assert len(bucket.object_keys("cap/")) == 1500


def test_sweep_capped_dry_run_keeps_listing_and_reports_backlog_real_run_stops_at_cap(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """Past the cap a dry run lists on (four pages) and reports every eligible object as
    `backlog`, `matched` staying at the cap; the real run deletes exactly the cap, stops,
    reports no backlog, and both exit 3."""
    bucket.put([f"cap/{i:04d}" for i in range(3500)], body=b"ab")
    split = split_time(bucket)
    bucket.put(["cap/fresh"])
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "cap/")])
    argv = ["--config", str(config), "--max-deletions", "1200"]

    dry = run_cli([*argv, "--dry-run"], now=run_at(split))
    real = run_cli(argv, now=run_at(split))

    preview, done = dry.target("outputs"), real.target("outputs")
    assert (dry.exit_code, real.exit_code) == (3, 3), dry.stdout
    assert (preview["status"], preview["scanned"], preview["backlog"]) == ("capped", 3501, 3500)
    assert (preview["matched"], preview["deleted"], preview["bytes_freed"]) == (1200, 0, 2400)
    assert dry.summary["targets"][0]["backlog"] == 3500
    assert (done["status"], done["matched"], done["deleted"]) == ("capped", 1200, 1200)
    assert "backlog" not in done
    assert done["scanned"] < 3501  # the real run stopped listing at the cap
    assert len(bucket.object_keys("cap/")) == 3501 - 1200


def test_sweep_whole_bucket_allowed_deletes_every_old_object(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """With allow_whole_bucket and an empty prefix, every old key of the bucket goes."""
    bucket.put(["a", "b/c", "d/e/f"])
    split = split_time(bucket)
    bucket.put(["new"])
    target = s3_target(s3.url, bucket.name, "", allow_whole_bucket=True)
    config = write_config(tmp_path / "c.toml", [target])

    result = run_cli(["--config", str(config)], now=run_at(split))

    assert result.target("outputs")["deleted"] == 3, result.stdout
    assert bucket.object_keys() == {"new"}


def test_quick_target_from_environment_sweeps_prefix_as_target_s3(
    s3: S3Endpoint, bucket: Bucket
) -> None:
    """CLEANUP_S3_* alone make a target named `s3` that sweeps its prefix as a folder."""
    bucket.put(["tmp/x", "tmp/y/z", "tmp-keep/x"])
    split = split_time(bucket)
    env = {
        "CLEANUP_S3_BUCKET": bucket.name,
        "CLEANUP_S3_PREFIX": "tmp",
        "CLEANUP_S3_ENDPOINT_URL": s3.url,
        "CLEANUP_S3_REGION": "us-east-1",
        "CLEANUP_MAX_AGE": "1d",
    }

    result = run_cli([], env=env, now=run_at(split))

    assert result.exit_code == 0, result.stdout
    target = result.target("s3")
    assert (target["kind"], target["status"], target["deleted"]) == ("s3", "ok", 2)
    assert bucket.object_keys() == {"tmp-keep/x"}


def test_sweep_debug_events_carry_key_and_size(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """Each deleted object is logged at DEBUG as item_deleted with its key and size."""
    bucket.put(["p/one", "p/two"], body=b"abc")
    split = split_time(bucket)
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "p")])

    result = run_cli(["--config", str(config), "--log-level", "DEBUG"], now=run_at(split))

    deleted = result.events("item_deleted")
    assert sorted((e["key"], e["size"], e["target"], e["kind"]) for e in deleted) == [
        ("p/one", 3, "outputs", "s3"),
        ("p/two", 3, "outputs", "s3"),
    ]
