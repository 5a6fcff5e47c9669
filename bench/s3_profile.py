"""Where cleanup's CPU per S3 key goes, on the stand-in at real S3 latency.

Three measurements, each on a freshly seeded bucket of bench/s3standin.py:

1. cleanup as the benchmark runs it, under /usr/bin/time: CPU seconds (user + sys)
   per key, start-up included, and wall time.
2. the same under py-spy, sampling the thread that holds the GIL (`--gil`, by
   function): each sample is put in one phase (listing request, delete request,
   cleanup's per-key loop, start-up, other) and one layer (botocore's response
   parser, serializer, signer, HTTP, ...); the shares are scaled to measurement 1's
   CPU, so the table reads in µs of CPU per key.
3. botocore alone, in this process, on the same stand-in with no latency: thread CPU
   of parsing one 1000-key ListObjectsV2 page (default timestamp parser, and the
   standard library's as cleanup configures it), of a whole list_objects_v2 call, and
   of a whole 1000-key DeleteObjects call (building, signing, sending, parsing), with
   a client configured as cleanup's (path style, standard retries, stdlib timestamps).
   These are botocore's costs, whatever cleanup does around them.

    .venv/bin/python bench/s3_profile.py                       # 100,000 flat keys, 30/150 ms
    .venv/bin/python bench/s3_profile.py --objects 20000       # quicker
    .venv/bin/python bench/s3_profile.py --subprefixes 100 --list-ms 100 --delete-ms 600
    .venv/bin/python bench/s3_profile.py --raw /tmp/cleanup.txt  # keep py-spy's stacks

py-spy is installed into the venv when missing (`pip install py-spy`); it needs
ptrace, which a root shell or a container with SYS_PTRACE has.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from s3_bench import PREFIX, TIME, cleanup_config, environment, read_events
from s3standin import StandIn

CLEANUP_TARGET = "cleanup/targets/"
# A sample's phase: the first of these functions of cleanup's S3 target on its stack.
PHASES = (
    ("_pages", "listing requests"),
    ("_delete", "delete requests"),
    ("_send", "delete requests"),
    ("_settle", "delete requests"),
    ("make_client", "client creation"),
    ("_eligible", "per-key loop (filter, batch)"),
    ("_list_and_dispatch", "per-key loop (filter, batch)"),
    ("dispatch", "per-key loop (filter, batch)"),
)
# A sample's layer: the first of these files (leafward order of precedence) on its stack.
LAYERS = (
    ("botocore/parsers.py", "botocore: parse response"),
    ("botocore/serialize.py", "botocore: serialize request"),
    ("botocore/auth.py", "botocore: sign"),
    ("botocore/signers.py", "botocore: sign"),
    ("botocore/validate.py", "botocore: validate parameters"),
    ("botocore/endpoint_provider.py", "botocore: endpoint rules"),
    ("botocore/regions.py", "botocore: endpoint rules"),
    ("botocore/retries/", "botocore: retries"),
    ("botocore/httpchecksum.py", "botocore: checksums"),
    ("urllib3/", "HTTP (urllib3, http.client, socket)"),
    ("http/client.py", "HTTP (urllib3, http.client, socket)"),
    ("botocore/httpsession.py", "HTTP (urllib3, http.client, socket)"),
    ("botocore/awsrequest.py", "HTTP (urllib3, http.client, socket)"),
    ("botocore/hooks.py", "botocore: event hooks and handlers"),
    ("botocore/handlers.py", "botocore: event hooks and handlers"),
    ("botocore/", "botocore: other"),
    ("logging/", "logging"),
    ("pythonjsonlogger", "logging"),
    ("cleanup/", "cleanup's own code"),
)


def ensure_py_spy() -> str:
    path = Path(sys.executable).parent / "py-spy"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(path)


def cleanup_argv(config: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "cleanup"), "--config", str(config)]


def seed(s3: StandIn, args: argparse.Namespace, **latency: float) -> str:
    bucket = f"profile-{uuid.uuid4().hex[:10]}"
    s3.seed(
        bucket=bucket,
        old=args.objects,
        fresh=args.objects // 100,
        subprefixes=args.subprefixes,
        list_ms=latency.get("list_ms", args.list_ms),
        delete_ms=latency.get("delete_ms", args.delete_ms),
        checksums=not args.no_checksums,
    )
    return bucket


def timed_run(s3: StandIn, args: argparse.Namespace, work: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (KiB) of one unprofiled run."""
    bucket = seed(s3, args)
    config = work / "timed.toml"
    cleanup_config(config, s3.url, bucket, args.cleanup_option)
    report = work / "time"
    began = time.monotonic()
    proc = subprocess.run(
        [TIME, "-f", "%M %U %S", "-o", str(report), *cleanup_argv(config)],
        env=environment(s3),
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - began
    check = s3.check(bucket)
    s3.drop(bucket)
    if proc.returncode != 0 or not check["ok"]:
        raise SystemExit(f"cleanup run wrong: rc={proc.returncode} {check} {proc.stdout[-500:]}")
    peak, user, system = report.read_text().split()[-3:]
    return wall, float(user) + float(system), int(peak)


def profiled_run(s3: StandIn, args: argparse.Namespace, work: Path, raw: Path) -> float:
    bucket = seed(s3, args)
    config = work / "profiled.toml"
    cleanup_config(config, s3.url, bucket, args.cleanup_option)
    # --gil: only the thread holding the GIL is sampled. py-spy's own idle detection does
    # not work here (threads blocked in recv() count as active), and cleanup's CPU is
    # GIL-bound, so the samples are its Python CPU time: count / rate seconds.
    spy = [ensure_py_spy(), "record", "--format", "raw", "--function", "--gil"]
    spy += ["--rate", str(args.rate)]
    began = time.monotonic()
    proc = subprocess.run(
        [*spy, "--output", str(raw), "--", *cleanup_argv(config)],
        env=environment(s3),
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - began
    check = s3.check(bucket)
    s3.drop(bucket)
    finished = [e for e in read_events(proc.stdout) if e.get("event") == "run_finished"]
    if proc.returncode != 0 or not check["ok"] or not finished:
        raise SystemExit(f"profiled run wrong: rc={proc.returncode} {check} {proc.stderr[-800:]}")
    return wall


def frames(stack: str) -> list[tuple[str, str]]:
    """(function, file) from root to leaf of one py-spy raw line's stack."""
    out = []
    for frame in stack.split(";"):
        name, _, where = frame.rpartition(" (")
        out.append((name, where.rstrip(")").rsplit(":", 1)[0]))
    return out


def classify(stack: list[tuple[str, str]]) -> tuple[str, str]:
    phase = "other"
    # py-spy names methods "S3Target._send" and comprehensions "..._send.<locals>.<listcomp>".
    in_target = [
        name.split(".<locals>")[0].rsplit(".", 1)[-1]
        for name, path in stack
        if CLEANUP_TARGET in path
    ]
    for function, label in PHASES:
        if function in in_target:
            phase = label
            break
    else:
        if any(name in ("_find_and_load", "<module>") for name, _ in stack):
            phase = "start-up (imports)"
    layer = "other (interpreter, threading, ...)"
    for needle, label in LAYERS:
        if any(needle in path for _, path in stack):
            layer = label
            break
    return phase, layer


def analyse(raw: Path, rate: int, cpu_s: float, keys: int, top: int) -> list[str]:
    by_cell: Counter[tuple[str, str]] = Counter()
    by_leaf: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text.strip():
            continue  # a sample with no Python frame
        count = int(count_text)
        stack = frames(stack_text)
        by_cell[classify(stack)] += count
        name, path = stack[-1]
        by_leaf[f"{name} ({path.split('site-packages/')[-1].split('lib/python3')[-1]})"] += count
        total += count
    if not total:
        return ["py-spy recorded no samples"]
    # Shares of the samples, scaled to the unprofiled run's CPU: samples / rate is time
    # holding the GIL, which on a busy machine includes time descheduled while holding it.
    per_sample_us = cpu_s * 1e6 / total / keys
    held = total / rate
    lines = [
        f"\nCPU per key by phase and layer: {total:,} GIL-holding samples ({held:.2f} s at "
        f"{rate}/s), their shares scaled to the unprofiled run's {cpu_s:.2f} s of CPU for "
        f"{keys:,} keys = {cpu_s * 1e6 / keys:.1f} µs/key:\n",
        "| phase | layer | µs/key | share | per 1000 keys |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    phases: Counter[str] = Counter()
    for (phase, _), count in by_cell.items():
        phases[phase] += count
    for phase, phase_count in phases.most_common():
        cells = sorted(
            ((layer, c) for (p, layer), c in by_cell.items() if p == phase), key=lambda x: -x[1]
        )
        lines.append(
            f"| **{phase}** | all | **{phase_count * per_sample_us:.1f}** | "
            f"{100 * phase_count / total:.0f}% | {phase_count * per_sample_us:.1f} ms |"
        )
        for layer, count in cells:
            if count * per_sample_us < 0.5:
                continue
            lines.append(
                f"| | {layer} | {count * per_sample_us:.1f} | {100 * count / total:.0f}% | "
                f"{count * per_sample_us:.1f} ms |"
            )
    lines += [
        f"\nTop {top} functions by own time (the leaf of each sample):\n",
        "| function | µs/key | share |",
        "| --- | ---: | ---: |",
    ]
    for name, count in by_leaf.most_common(top):
        lines.append(f"| `{name}` | {count * per_sample_us:.2f} | {100 * count / total:.1f}% |")
    return lines


def _stdlib_timestamp(text: str) -> datetime:
    # As cleanup's client configures botocore: the standard library instead of dateutil.
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def thread_cpu_ms(action: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        began = time.thread_time()
        action()
        samples.append((time.thread_time() - began) * 1000)
    return statistics.median(samples)


def botocore_alone(s3: StandIn, repeat: int) -> list[str]:
    """botocore's own costs per 1000-key request, apart from cleanup's code."""
    import botocore.session
    from botocore.config import Config
    from botocore.parsers import RestXMLParser

    bucket = f"micro-{uuid.uuid4().hex[:8]}"
    s3.seed(bucket=bucket, old=2000, list_ms=0, delete_ms=0)
    env = environment(s3)
    session = botocore.session.get_session(env_vars=None)
    session.set_credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    # As cleanup's client: listing timestamps through the standard library.
    factory = session.get_component("response_parser_factory")
    factory.set_parser_defaults(timestamp_parser=_stdlib_timestamp)
    client: Any = session.create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=s3.url,
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
    )
    query = "?list-type=2&prefix=output%2F&encoding-type=url"
    with urllib.request.urlopen(f"{s3.url}/{bucket}{query}") as answer:
        body = answer.read()
    shape = client.meta.service_model.operation_model("ListObjectsV2").output_shape
    response = {"body": body, "headers": {}, "status_code": 200}

    def parse(parser: Any) -> None:
        parsed = parser.parse(dict(response), shape)
        assert len(parsed["Contents"]) == 1000

    default = RestXMLParser()
    stdlib = RestXMLParser(timestamp_parser=_stdlib_timestamp)
    keys = [{"Key": f"output/absent/{n}"} for n in range(1000)]  # S3 reports them deleted

    def delete() -> None:
        client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})

    def list_page() -> None:
        client.list_objects_v2(Bucket=bucket, Prefix=PREFIX)

    for action in (delete, list_page):
        action()  # warm: the first call loads models and builds the endpoint
    figures = [
        ("parse a 1000-key ListObjectsV2 page, botocore's default timestamps", parse, default),
        ("parse a 1000-key ListObjectsV2 page, stdlib timestamps (as cleanup)", parse, stdlib),
    ]
    lines = [
        "\nbotocore alone, thread CPU per call (median of "
        f"{repeat}; the stand-in at 0 ms, {len(body):,} bytes of listing XML):\n",
        "| call | ms per call = µs per key |",
        "| --- | ---: |",
    ]
    for label, fn, parser in figures:
        ms = thread_cpu_ms(lambda fn=fn, parser=parser: fn(parser), repeat)
        lines.append(f"| {label} | {ms:.1f} |")
    for label, action in (
        ("whole list_objects_v2 call, 1000 keys, stdlib timestamps (sign, HTTP, parse)", list_page),
        ("whole delete_objects call, 1000 keys, Quiet (build, sign, HTTP, parse)", delete),
    ):
        ms = thread_cpu_ms(action, repeat)
        lines.append(f"| {label} | {ms:.1f} |")
    s3.drop(bucket)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--subprefixes", type=int, default=0)
    parser.add_argument("--list-ms", type=float, default=30)
    parser.add_argument("--delete-ms", type=float, default=150)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15, help="calls per botocore figure")
    parser.add_argument("--raw", help="keep py-spy's raw stacks in this file")
    parser.add_argument("--no-checksums", action="store_true", help="see bench/s3_bench.py")
    parser.add_argument("--cleanup-option", action="append", default=[], metavar="KEY=TOML")
    args = parser.parse_args()

    layout = f"under {args.subprefixes} sub-prefixes" if args.subprefixes else "flat"
    with StandIn() as s3, tempfile.TemporaryDirectory(prefix="s3profile-") as tmp:
        work = Path(tmp)
        raw = Path(args.raw) if args.raw else work / "raw.txt"
        wall, cpu, peak = timed_run(s3, args, work)
        spy_wall = profiled_run(s3, args, work, raw)
        print(
            f"## cleanup on {args.objects:,} keys {layout}, list {args.list_ms:g} ms / "
            f"delete {args.delete_ms:g} ms\n\n"
            f"Unprofiled: wall {wall:.2f} s, CPU {cpu:.2f} s = {cpu * 1e6 / args.objects:.1f} "
            f"µs/key (start-up included), {100 * cpu / wall:.0f}% of one core, peak RSS "
            f"{peak / 1024:.1f} MiB. Under py-spy: wall {spy_wall:.2f} s."
        )
        print("\n".join(analyse(raw, args.rate, cpu, args.objects, args.top)))
        print("\n".join(botocore_alone(s3, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
