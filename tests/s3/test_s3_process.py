"""The S3 target as a separate `python -m cleanup` process: SIGTERM and lazy imports.

A child process cannot get an injected clock, so here objects get old by waiting:
they are written, then the run uses `max_age = 1s` after two seconds have passed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.s3.conftest import Bucket, split_time
from tests.support.cli import Child
from tests.support.faultproxy import delay_deletes, fault_proxy
from tests.support.s3server import S3Endpoint


def test_sigterm_mid_run_finishes_batches_in_flight_counts_them_and_exits_143(
    s3: S3Endpoint, bucket: Bucket
) -> None:
    """SIGTERM during a slow sweep stops listing, lets the batches in flight finish, reports
    `interrupted` with counters that match what is really gone, and exits 143."""
    total = 12_000
    bucket.put([f"slow/{i:05d}" for i in range(total)])
    # The child reads the real clock, so the objects must really be older than its 1 s
    # max age: wait until this machine's clock is past the store's split by that much.
    cutoff = split_time(bucket).timestamp() + 1
    while time.time() <= cutoff:
        time.sleep(0.05)
    with fault_proxy(s3.url, before=[delay_deletes(0.5)]) as proxy:
        env = {
            **os.environ,
            "CLEANUP_S3_BUCKET": bucket.name,
            "CLEANUP_S3_PREFIX": "slow",
            "CLEANUP_S3_ENDPOINT_URL": proxy.url,
            "CLEANUP_MAX_AGE": "1s",
            "CLEANUP_LOG_LEVEL": "DEBUG",
        }
        child = Child([], env=env)
        seen = []
        for line in child.stdout:
            seen.append(line)
            if '"item_deleted"' in line:
                child.send_signal(signal.SIGTERM)
                break
        returncode, rest = child.ended(timeout=60)
    lines = [json.loads(raw) for raw in seen + rest.splitlines() if raw.startswith("{")]
    finished = [line for line in lines if line["event"] == "target_finished"]
    summary = lines[-1]

    assert returncode == 143
    assert summary["event"] == "run_finished"
    assert summary["status"] == "interrupted"
    assert finished[0]["status"] == "interrupted"
    deleted = finished[0]["deleted"]
    assert 1000 <= deleted < total
    assert deleted == sum(1 for line in lines if line["event"] == "item_deleted")
    assert len(bucket.object_keys("slow/")) == total - deleted


def test_volumes_only_run_never_imports_the_aws_sdk(tmp_path: Path) -> None:
    """A run with only a volume target imports neither boto3 nor botocore (the S3 module
    loads lazily); importing the S3 target does load botocore."""
    volume = tmp_path / "vol"
    volume.mkdir()
    probe = "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))\n"
    code = (
        "import sys\n"
        "from cleanup.cli import main\n"
        f"main(['--max-age', '1d'], environ={{'CLEANUP_VOLUMES': {str(volume)!r}}})\n" + probe
    )
    control = "import sys, cleanup.targets.s3.target\n" + probe

    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = subprocess.run(
        [sys.executable, "-c", control], capture_output=True, text=True, check=True
    )

    assert '"target_finished"' in run.stdout
    assert run.stdout.splitlines()[-1] == "[]", run.stdout
    assert loaded.stdout.strip() == "['botocore']"
