"""Listing over sub-prefixes in `list_parallelism` streams (docs/s3.md, "Parallel listing").

Against the real S3 API (moto, MinIO), through tests/support/faultproxy.py where a
test needs to see or hold the listing requests. Objects get old as in test_s3_sweep
(written before `split_time(bucket)`, run clock injected).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.s3.conftest import Bucket, run_at, s3_target, split_time, write_config
from tests.support.cli import run_cli
from tests.support.faultproxy import After, Before, Request, Response
from tests.support.faultproxy import fault_proxy as proxy_to
from tests.support.s3server import S3Endpoint

CONTRACT_S = 10.0
PLAIN_MAIN = [sys.executable, "-c", "import sys\nfrom cleanup.cli import main\nsys.exit(main())"]
OUTSIDE = ["out-archive/j/a", "outx/a", "other/out/a"]


def _query(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}


class Listings:
    """A proxy rule that records ListObjectsV2 / ListObjectVersions requests and holds each
    sub-prefix listing `hold_s`, counting how many are in the store at once."""

    def __init__(self, hold_s: float = 0.0) -> None:
        self.hold_s = hold_s
        self.requests: list[dict[str, str]] = []
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def rule(self) -> Before:
        def rule(request: Request) -> Response | None:
            query = _query(request)
            if request.method != "GET" or not ({"list-type", "versions"} & query.keys()):
                return None
            with self._lock:
                self.requests.append(query)
                nested = "delimiter" not in query
                if nested:
                    self.now += 1
                    self.peak = max(self.peak, self.now)
            if nested:
                time.sleep(self.hold_s)
                with self._lock:
                    self.now -= 1
            return None

        return rule


def _layout(bucket: Bucket) -> tuple[list[str], list[str]]:
    """Old keys directly under out/ and in 12 sub-prefixes (one nested deeper), plus
    sentinels outside; returns (old under out/, keys that must stay)."""
    direct = [f"out/d{i}" for i in range(5)]
    nested = [f"out/job-{j:02d}/k{i:03d}" for j in range(12) for i in range(150)]
    deep = ["out/job-03/deep/x", "out/job-11/deep/er/y"]
    old = direct + nested + deep
    bucket.put(old + OUTSIDE)
    return old, OUTSIDE


def test_parallel_listing_sub_prefixes_and_direct_keys_exact_counters_nothing_outside(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """With keys directly under the prefix and in 12 sub-prefixes, 4 streams list the
    sub-prefixes concurrently (2 to 4 at once): exactly the old keys under the prefix go,
    excluded and fresh ones and every key outside stay, and the counters are exact."""
    old, outside = _layout(bucket)
    split = split_time(bucket)
    fresh = ["out/dfresh", "out/job-05/fresh"]
    bucket.put(fresh)
    listings = Listings(hold_s=0.3)
    with proxy_to(s3.url, before=[listings.rule()]) as proxy:
        target = s3_target(proxy.url, bucket.name, "out", list_parallelism=4, exclude=["job-07/*"])
        config = write_config(tmp_path / "c.toml", [target])
        result = run_cli(["--config", str(config)], now=run_at(split))

    excluded = [key for key in old if key.startswith("out/job-07/")]
    outputs = result.target("outputs")
    assert result.exit_code == 0, result.stdout
    gone = len(old) - len(excluded)
    assert (outputs["scanned"], outputs["matched"], outputs["deleted"]) == (gone + 2, gone, gone)
    assert outputs["failed"] == 0
    assert bucket.object_keys() == set(excluded + fresh + outside)
    top = [q for q in listings.requests if "delimiter" in q]
    subs = sorted(q["prefix"] for q in listings.requests if "delimiter" not in q)
    assert {(q["prefix"], q["delimiter"]) for q in top} == {("out/", "/")}
    assert subs == [f"out/job-{j:02d}/" for j in range(12)]
    assert 2 <= listings.peak <= 4, listings.peak


def test_list_parallelism_1_lists_the_prefix_in_one_stream_without_delimiter(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """`list_parallelism = 1`: one recursive listing of the prefix, and the same result."""
    old, outside = _layout(bucket)
    split = split_time(bucket)
    listings = Listings()
    with proxy_to(s3.url, before=[listings.rule()]) as proxy:
        target = s3_target(proxy.url, bucket.name, "out", list_parallelism=1)
        config = write_config(tmp_path / "c.toml", [target])
        result = run_cli(["--config", str(config)], now=run_at(split))

    assert result.target("outputs")["deleted"] == len(old), result.stdout
    assert {q["prefix"] for q in listings.requests} == {"out/"}
    assert not any("delimiter" in q for q in listings.requests)
    assert bucket.object_keys() == set(outside)


def test_parallel_listing_dry_run_predicts_exactly_what_the_real_run_deletes(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """Over 30 sub-prefixes and 300 direct keys, the dry run with 8 streams counts what
    one stream counts, and the real run right after deletes exactly that many."""
    old = [f"w/{i:04d}" for i in range(300)]
    old += [f"w/s{j:02d}/{i:03d}" for j in range(30) for i in range(80)]
    bucket.put([*old, "wx/keep"])
    split = split_time(bucket)
    bucket.put(["w/s04/new", "w/new"])
    one = write_config(
        tmp_path / "one.toml", [s3_target(s3.url, bucket.name, "w", list_parallelism=1)]
    )
    many = write_config(
        tmp_path / "many.toml", [s3_target(s3.url, bucket.name, "w", list_parallelism=8)]
    )
    counters = ("scanned", "matched", "deleted", "failed", "bytes_freed")

    dry_one = run_cli(["--config", str(one), "--dry-run"], now=run_at(split)).target("outputs")
    dry = run_cli(["--config", str(many), "--dry-run"], now=run_at(split)).target("outputs")
    real = run_cli(["--config", str(many)], now=run_at(split)).target("outputs")

    assert [dry[c] for c in counters] == [dry_one[c] for c in counters]
    assert (dry["scanned"], dry["matched"], dry["deleted"]) == (len(old) + 2, len(old), 0)
    assert (real["matched"], real["deleted"], real["failed"]) == (dry["matched"],) * 2 + (0,)
    assert real["bytes_freed"] == dry["bytes_freed"]
    assert bucket.object_keys() == {"wx/keep", "w/s04/new", "w/new"}


def test_parallel_listing_cap_deletes_exactly_max_deletions(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """With 8 streams over 12 sub-prefixes, `--max-deletions 1234` deletes exactly 1234."""
    old = [f"c/{j:02d}/{i:03d}" for j in range(12) for i in range(250)]
    bucket.put(old)
    split = split_time(bucket)
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "c")])

    result = run_cli(["--config", str(config), "--max-deletions", "1234"], now=run_at(split))

    outputs = result.target("outputs")
    assert result.exit_code == 3, result.stdout
    assert (outputs["status"], outputs["deleted"]) == ("capped", 1234)
    assert len(bucket.object_keys("c/")) == len(old) - 1234


def test_parallel_listing_more_sub_prefixes_than_one_page_lists_every_one(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """1,100 sub-prefixes (more than one page of CommonPrefixes) and direct keys: all go."""
    old = [f"m/{j:04d}/a" for j in range(1100)] + ["m/top1", "m/top2"]
    bucket.put(old)
    split = split_time(bucket)
    config = write_config(tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "m")])

    result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert (outputs["scanned"], outputs["deleted"]) == (len(old), len(old)), result.stdout
    assert bucket.object_keys("m/") == set()


def test_parallel_listing_versions_all_removes_every_old_version_in_sub_prefixes(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """`versions = "all"` over sub-prefixes: every old version and delete marker, direct or
    nested, goes for good; the dry run counted the same; the fresh version stays."""
    bucket.enable_versioning()
    keys = ["v/top", "v/a/1", "v/a/2", "v/b/1", "v/b/c/1"]
    bucket.put(keys)
    bucket.put(["v/a/1", "v/b/c/1"], body=b"second")
    bucket.client.delete_object(Bucket=bucket.name, Key="v/b/1")
    split = split_time(bucket)
    bucket.put(["v/a/2"], body=b"fresh")
    config = write_config(
        tmp_path / "c.toml", [s3_target(s3.url, bucket.name, "v", versions="all")]
    )

    dry = run_cli(["--config", str(config), "--dry-run"], now=run_at(split)).target("outputs")
    real = run_cli(["--config", str(config)], now=run_at(split)).target("outputs")

    old = len(keys) + 2 + 1  # the versions, two second versions, one delete marker
    assert (dry["scanned"], dry["matched"]) == (old + 1, old), dry
    assert (real["matched"], real["deleted"], real["failed"]) == (old, old, 0)
    versions, markers = bucket.versions("v/")
    assert {key for key, _ in versions} == {"v/a/2"} and markers == set()


def _inject_common_prefix(sub: str) -> After:
    def rule(request: Request, response: Response) -> Response:
        if "delimiter" not in _query(request) or response.status != 200:
            return response
        extra = f"<CommonPrefixes><Prefix>{sub}</Prefix></CommonPrefixes>".encode()
        body = response.body.replace(b"</ListBucketResult>", extra + b"</ListBucketResult>")
        return Response(response.status, response.headers, body)

    return rule


def test_sub_prefix_outside_the_prefix_fails_target_and_is_never_listed_or_deleted(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    """A store answering a CommonPrefix outside the prefix fails the target ("outside the
    prefix"); nothing under that foreign prefix is deleted."""
    bucket.put(["out/a/1", "out-archive/victim"])
    split = split_time(bucket)
    with proxy_to(s3.url, after=[_inject_common_prefix("out-archive/")]) as proxy:
        config = write_config(tmp_path / "c.toml", [s3_target(proxy.url, bucket.name, "out")])
        result = run_cli(["--config", str(config)], now=run_at(split))

    outputs = result.target("outputs")
    assert outputs["status"] == "failed", result.stdout
    assert "outside the prefix" in outputs["error"]
    assert "out-archive/victim" in bucket.object_keys()


def test_sigterm_while_sub_prefix_listings_hang_ends_run_within_10s_exit_143(
    s3: S3Endpoint, bucket: Bucket
) -> None:
    """With every sub-prefix listing held by the store, SIGTERM ends the run within 10 s,
    even without main_exit's os._exit: no listing thread keeps the process alive, the
    target is `interrupted` by itself and nothing is deleted."""
    bucket.put([f"stop/{j}/k" for j in range(20)])
    release, seen = threading.Event(), threading.Event()

    def hold(request: Request) -> Response | None:
        query = _query(request)
        if "list-type" in query and "delimiter" not in query:
            seen.set()
            release.wait()
        return None

    env = {
        **os.environ,
        "CLEANUP_S3_BUCKET": bucket.name,
        "CLEANUP_S3_PREFIX": "stop/",
        "CLEANUP_MAX_AGE": "1s",
    }
    with proxy_to(s3.url, before=[hold]) as proxy:
        env["CLEANUP_S3_ENDPOINT_URL"] = proxy.url
        child = subprocess.Popen(PLAIN_MAIN, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert seen.wait(60), "no sub-prefix listing arrived"
            began = time.monotonic()
            child.send_signal(signal.SIGTERM)
            out, _ = child.communicate(timeout=60)
            took = time.monotonic() - began
        finally:
            release.set()
            if child.poll() is None:
                child.kill()
                child.communicate()

    lines = [json.loads(line) for line in out.splitlines()]
    outputs = next(line for line in lines if line["event"] == "target_finished")
    assert child.returncode == 143, lines[-2:]
    assert took < CONTRACT_S, took
    assert (lines[-1]["event"], lines[-1]["status"]) == ("run_finished", "interrupted")
    assert outputs["status"] == "interrupted" and "error" not in outputs, outputs
    assert len(bucket.object_keys("stop/")) == 20


@pytest.mark.parametrize("streams", [1, 8])
def test_empty_prefix_warning_still_given_with_parallel_listing(
    s3: S3Endpoint, bucket: Bucket, tmp_path: Path, streams: int
) -> None:
    """A prefix holding nothing gives the `prefix_empty` warning, one stream or eight."""
    bucket.put(["elsewhere/a"])
    target = s3_target(s3.url, bucket.name, "nothing", list_parallelism=streams)
    config = write_config(tmp_path / "c.toml", [target])

    result = run_cli(["--config", str(config)])

    codes = [w["code"] for w in result.events("target_warning")]
    assert result.exit_code == 0, result.stdout
    assert codes == ["prefix_empty"]
