"""The S3 target's checks and messages: `--preflight`, the `prefix_empty` warning, plain
messages for invalid bucket names, and the traceback of an unexpected error.

Objects get old as in test_s3_sweep (written before `split_time(bucket)`, run clock injected).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cleanup.targets.s3 import target as s3_target_module
from tests.s3.conftest import Bucket, run_at, s3_target, split_time, write_config
from tests.support.cli import run_cli
from tests.support.faultproxy import deny_listing, fault_proxy
from tests.support.s3server import S3Endpoint, free_port


def _preflight(config: Path) -> tuple[int, dict[str, object], str]:
    result = run_cli(["--config", str(config), "--preflight"])
    event = result.one("preflight")
    assert result.summary["event"] == "run_finished"
    assert result.events("target_started") == []  # nothing ran, so nothing was deleted
    return result.exit_code, event, result.stdout


def test_preflight_ready_bucket_exit_0_and_nothing_deleted(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """A listable prefix is `ready` with no problem, the run exits 0, and old objects stay."""
    bucket.put(["out/old"])
    split_time(bucket)
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "out/")])

    code, event, stdout = _preflight(config)

    assert code == 0, stdout
    assert (event["ready"], event["problems"], event["target"]) == (True, [], "outputs")
    assert bucket.object_keys() == {"out/old"}


def test_preflight_versions_all_ready_exit_0(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """With versions = "all" the check lists versions (ListObjectVersions) and is ready."""
    bucket.enable_versioning()
    bucket.put(["v/a"])
    config = write_config(
        tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "v/", versions="all")]
    )

    code, event, stdout = _preflight(config)

    assert code == 0, stdout
    assert event["ready"] is True
    assert len(bucket.versions("v/")[0]) == 1


def test_preflight_missing_bucket_exit_1_names_bucket_and_code(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """A bucket that does not exist is a problem naming it, its prefix and NoSuchBucket."""
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, "no-such-bucket", "out/")])

    code, event, stdout = _preflight(config)

    assert code == 1, stdout
    assert event["ready"] is False
    [problem] = event["problems"]
    assert "s3://no-such-bucket/out/" in problem
    assert "NoSuchBucket: the bucket does not exist" in problem


def test_preflight_unreachable_endpoint_exit_1_names_endpoint_quickly(tmp_path: Path) -> None:
    """A closed port is a problem naming bucket, prefix and endpoint, found within seconds."""
    port = free_port()
    config = write_config(
        tmp_path / "c.toml", [s3_target(f"http://127.0.0.1:{port}", "media", "out/")]
    )

    began = time.monotonic()
    code, event, stdout = _preflight(config)

    assert code == 1, stdout
    [problem] = event["problems"]
    assert "s3://media/out/" in problem
    assert f"127.0.0.1:{port}" in problem
    assert "unreachable" in problem
    assert time.monotonic() - began < 30


def test_preflight_denied_listing_exit_1_with_access_denied_and_policy_hint(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """A store refusing the listing is a problem with AccessDenied and the IAM policy hint."""
    bucket.put(["out/a"])
    with fault_proxy(s3.url, before=[deny_listing()]) as proxy:
        config = write_config(tmp_path / "c.toml", [s3_target(proxy.url, bucket.name, "out")])
        code, event, stdout = _preflight(config)

    assert code == 1, stdout
    [problem] = event["problems"]
    assert f"s3://{bucket.name}/out/" in problem
    assert "AccessDenied" in problem and "IAM policy" in problem
    assert bucket.object_keys() == {"out/a"}


def test_preflight_without_credentials_exit_1_says_none_found_in_default_chain(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no credential anywhere in the default chain, the problem says so."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "out/")])

    code, event, stdout = _preflight(config)

    assert code == 1, stdout
    [problem] = event["problems"]
    assert "no AWS credentials found in the default chain" in problem
    assert f"s3://{bucket.name}/out/" in problem


def test_empty_prefix_warns_prefix_empty_with_similar_key_and_exits_0(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """A prefix under which nothing at all is listed gets a `prefix_empty` target_warning
    naming bucket and prefix and pointing at a key beside it; the run still exits 0."""
    bucket.put(["output-archive/2024/a.bin", "other/b"])
    split = split_time(bucket)
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "output")])

    result = run_cli(["--config", str(config)], now=run_at(split))

    assert result.exit_code == 0, result.stdout
    assert result.target("outputs")["status"] == "ok"
    warning = result.one("target_warning")
    assert (warning["code"], warning["level"], warning["target"]) == (
        "prefix_empty",
        "WARNING",
        "outputs",
    )
    assert (warning["bucket"], warning["prefix"]) == (bucket.name, "output/")
    assert f"s3://{bucket.name}/output/ holds no object" in warning["message"]
    assert warning["similar_key"] == "output-archive/2024/a.bin"
    assert "'output-archive/2024/a.bin'" in warning["message"]
    assert bucket.object_keys() == {"output-archive/2024/a.bin", "other/b"}


def test_empty_prefix_without_neighbours_warns_without_hint(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """With nothing beside the prefix either, the warning comes without a similar key."""
    bucket.put(["other/b"])
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "output/")])

    result = run_cli(["--config", str(config), "--dry-run"])

    warning = result.one("target_warning")
    assert warning["code"] == "prefix_empty"
    assert "similar_key" not in warning
    assert result.exit_code == 0


def test_prefix_holding_only_fresh_or_excluded_objects_gives_no_prefix_empty_warning(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """A prefix that holds objects, even none eligible (fresh or excluded), is not empty."""
    bucket.put(["out/keep.lock"])
    split = split_time(bucket)
    bucket.put(["out/fresh"])
    target = s3_target(s3.url, bucket.name, "out/", exclude=["*.lock"])
    config = write_config(tmp_path / "c.toml", [target])

    result = run_cli(["--config", str(config)], now=run_at(split))

    assert result.exit_code == 0, result.stdout
    assert result.target("outputs")["matched"] == 0
    assert result.events("target_warning") == []


@pytest.mark.parametrize("name", ["Media_Bucket", "media bucket"])
def test_invalid_bucket_name_fails_target_with_plain_message_naming_it(
    s3: S3Endpoint, tmp_path: Path, name: str
) -> None:
    """A bucket name outside S3's rules (refused by the store, or by botocore before
    sending) fails the target with a message that names it and says what a valid name is,
    never a bare exception name; preflight says the same."""
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, name, "out/")])

    result = run_cli(["--config", str(config)])
    code, event, _ = _preflight(config)

    error = result.target("outputs")["error"]
    assert result.exit_code == 1
    assert f"s3://{name}/out/" in error
    assert f"{name!r} is not a valid S3 bucket name" in error
    assert "lowercase letters, digits, dots and hyphens" in error
    assert "ParamValidationError" not in error and "regex" not in error
    assert code == 1 and event["problems"] == [error]


def test_unexpected_error_in_a_sending_thread_logs_traceback_with_its_cause(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a sending thread fails the target with an error naming the original
    exception and a traceback that shows it as the cause."""
    bucket.put(["out/a"])
    split = split_time(bucket)

    def broken(*args: object, **kwargs: object) -> dict[object, str]:
        raise LookupError("a bug while deleting")

    monkeypatch.setattr(s3_target_module.S3Target, "_delete", broken)
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "out/")])

    result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert outputs["status"] == "failed"
    assert "LookupError: a bug while deleting" in outputs["error"]
    assert f"s3://{bucket.name}/out/" in outputs["error"]
    assert "LookupError: a bug while deleting" in outputs["traceback"]
    assert "direct cause" in outputs["traceback"]
    assert "in broken" in outputs["traceback"]
    assert bucket.object_keys() == {"out/a"}
