"""The S3 benchmark's stand-in speaks the S3 API the tools use, and the benchmark still runs."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from s3standin import StandIn  # noqa: E402


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn() as s3:
        yield s3


def client(s3: StandIn, attempts: int = 3) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3.url,
        region_name="us-east-1",
        aws_access_key_id="any",
        aws_secret_access_key="any",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "total_max_attempts": attempts},
            max_pool_connections=20,
        ),
    )


def test_standin_lists_like_s3_by_page_by_delimiter_and_after_a_key(standin: StandIn) -> None:
    """Paginated, delimited and start-after listings give each live key exactly once."""
    standin.seed(bucket="lists", old=2500, fresh=25, subprefixes=7, top_level=4)
    s3 = client(standin)
    pages = s3.get_paginator("list_objects_v2")
    keys = [
        o["Key"]
        for page in pages.paginate(
            Bucket="lists", Prefix="output/", PaginationConfig={"PageSize": 300}
        )
        for o in page.get("Contents", [])
    ]
    assert len(keys) == len(set(keys)) == 2525 and keys == sorted(keys)
    assert sum(k.endswith(".new") for k in keys) == 25

    tops = list(
        pages.paginate(
            Bucket="lists", Prefix="output/", Delimiter="/", PaginationConfig={"PageSize": 3}
        )
    )
    prefixes = [p["Prefix"] for page in tops for p in page.get("CommonPrefixes", [])]
    direct = [o["Key"] for page in tops for o in page.get("Contents", [])]
    assert prefixes == [f"output/job-{j:03d}/" for j in range(7)]
    assert len(direct) == 4 and all(k.count("/") == 1 for k in direct)
    under = [
        o["Key"]
        for p in prefixes
        for page in pages.paginate(Bucket="lists", Prefix=p)
        for o in page.get("Contents", [])
    ]
    assert sorted(under + direct) == keys

    after = s3.list_objects_v2(Bucket="lists", Prefix="output/", StartAfter=keys[100], MaxKeys=5)
    assert [o["Key"] for o in after["Contents"]] == keys[101:106] and after["IsTruncated"]
    versions = [
        v["Key"]
        for page in s3.get_paginator("list_object_versions").paginate(
            Bucket="lists", Prefix="output/"
        )
        for v in page.get("Versions", [])
    ]
    assert versions == keys
    s3.head_bucket(Bucket="lists")


def test_standin_deletes_quietly_or_not_and_checks_what_remains(standin: StandIn) -> None:
    """DeleteObjects removes keys (reporting them unless Quiet); the check names what is left."""
    standin.seed(bucket="deletes", old=1500, fresh=10)
    s3 = client(standin)
    loud = s3.delete_objects(
        Bucket="deletes", Delete={"Objects": [{"Key": f"output/{n:07d}"} for n in range(1000)]}
    )
    assert len(loud["Deleted"]) == 1000 and not loud.get("Errors")
    check = standin.check("deletes")
    assert not check["ok"] and check["old_left"] == 500
    quiet = s3.delete_objects(
        Bucket="deletes",
        Delete={"Objects": [{"Key": f"output/{n:07d}"} for n in range(1000, 1500)], "Quiet": True},
    )
    assert not quiet.get("Deleted") and not quiet.get("Errors")
    assert standin.check("deletes")["ok"]
    fresh = [f"output/{n:07d}.new" for n in range(0, 1500, 150)]
    versioned = s3.delete_objects(
        Bucket="deletes", Delete={"Objects": [{"Key": k, "VersionId": "null"} for k in fresh]}
    )
    assert [(d["Key"], d["VersionId"]) for d in versioned["Deleted"]] == [
        (k, "null") for k in fresh
    ]
    assert standin.check("deletes")["fresh_lost"] == 10
    s3.delete_objects(Bucket="deletes", Delete={"Objects": [{"Key": "outputs/0"}], "Quiet": True})
    assert standin.check("deletes")["outside_lost"] == 1


def test_standin_throttles_per_key_and_whole_requests(standin: StandIn) -> None:
    """Past the rate, per-key SlowDown entries (mode keys) or a 503 SlowDown (mode 503)."""
    standin.seed(bucket="perkey", old=2000, throttle_rate=300)
    s3 = client(standin, attempts=1)
    answer = s3.delete_objects(
        Bucket="perkey",
        Delete={"Objects": [{"Key": f"output/{n:07d}"} for n in range(1000)], "Quiet": True},
    )
    errors = answer["Errors"]
    assert 600 <= len(errors) <= 700 and {e["Code"] for e in errors} == {"SlowDown"}
    assert standin.check("perkey")["stats"]["throttled_keys"] == len(errors)

    standin.seed(bucket="whole", old=3000, throttle_rate=300, throttle_mode="503")
    batch = {"Objects": [{"Key": f"output/{n:07d}"} for n in range(1000)], "Quiet": True}
    s3.delete_objects(Bucket="whole", Delete=batch)  # served: the bucket goes into debt
    with pytest.raises(s3.exceptions.ClientError, match="SlowDown"):
        s3.delete_objects(Bucket="whole", Delete=batch)
    assert standin.check("whole")["stats"]["throttled_requests"] == 1


def test_standin_throttle_can_refuse_everything_and_be_lifted_mid_run(standin: StandIn) -> None:
    """A tiny rate with no burst throttles every key; configuring rate 0 lifts it."""
    standin.seed(bucket="never", old=100, throttle_rate=1e-9, throttle_burst=0)
    s3 = client(standin, attempts=1)
    batch = {"Objects": [{"Key": f"output/{n:07d}"} for n in range(100)], "Quiet": True}
    assert len(s3.delete_objects(Bucket="never", Delete=batch)["Errors"]) == 100
    assert standin.configure(bucket="never", throttle_rate=0)["throttle_rate"] == 0
    assert not s3.delete_objects(Bucket="never", Delete=batch).get("Errors")
    assert standin.check("never")["ok"]


def test_standin_serves_requests_concurrently(standin: StandIn) -> None:
    """Twenty requests of 300 ms each end in far less than 20 x 300 ms."""
    standin.seed(bucket="slow", old=10, list_ms=300, delete_ms=300)
    s3 = client(standin)
    s3.list_objects_v2(Bucket="slow")  # warm the connection pool's first connection
    began = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda _: s3.list_objects_v2(Bucket="slow"), range(20)))
    assert time.monotonic() - began < 2.0
    assert standin.check("slow")["stats"]["peak_in_flight"]["ListObjectsV2"] >= 10


def test_s3_bench_small_run_reports_every_table_and_the_acceptance_lines() -> None:
    """At a small size the benchmark runs both tools in every section, each run checked."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "s3_bench.py"),
            "--objects=2000",
            "--runs=1",
            "--latencies=5/20",
            "--layouts=0,10",
            "--throttles=2000:4000",
            "--throttle-mode=both",
            "--memory-objects=3000",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    speed = re.findall(
        r"^\| (cleanup|s5cmd) \| ([\d.]+) s \| [\d,]+ \| ([\d.]+)x \| ([\d.]+) MiB .* \| yes \|$",
        out,
        re.M,
    )
    assert len(speed) == 4, out
    assert all(float(rss) > 1 for *_, rss in speed)
    throttled = re.findall(
        r"^\| cleanup \| (\d+) \| ([\d.]+) s \| ([\d.]+)x \| ([\d,]+) \|", out, re.M
    )
    assert len(throttled) == 2, out
    assert "2,000 keys flat, list 5 ms / delete 20 ms: cleanup" in out
    assert "throttled at 2,000 keys/s (503 SlowDown): exit" in out
    assert re.search(r"3,000 keys flat.*cleanup peak RSS [\d.]+ MiB", out), out


def test_s3_bench_throttle_verdict_misses_when_any_run_misses() -> None:
    """A throttled case meets its target only if every run does: one slow run of three,
    or one that left a key, makes the acceptance line say MISSES."""
    from s3_bench import Sample, Scenario, acceptance

    scenario = Scenario("throttle", 100_000, 0, 30.0, 150.0, throttle_rate=3500.0)

    def run(wall_s: float, old_left: int = 0) -> Sample:
        return Sample(
            "cleanup", scenario, wall_s, 0, 70 * 1024, 1.0, 0.1, old_left, 0, 0,
            None, None, True, 1,
        )  # fmt: skip

    def line(runs: list[Sample]) -> str:
        return next(x for x in acceptance([(scenario, {"cleanup": runs})]) if "3,500" in x)

    fast = [run(28.0), run(28.5), run(28.6)]
    assert line(fast).endswith(": meets")
    assert "28.5 s (runs 28.0 to 28.6 s)" in line(fast)
    assert line([*fast[:2], run(32.0)]).endswith(": MISSES")  # 32.0 s > 1.15 x 27.6 s
    assert line([*fast[:2], run(28.6, old_left=1)]).endswith(": MISSES")
