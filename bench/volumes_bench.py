"""Volume benchmark: this tool vs GNU `find -mtime +N -delete` on identical trees, in one run.

Each round rebuilds one identical tree per command (outside the timed part),
then times `find` and `cleanup` with each `--workers` count (a cold process,
as a CronJob runs it), in an order that rotates from round to round. Prints
the median wall time of each, its ratio to find and each command's peak RSS;
then sweeps a larger tree once to show memory stays flat.

Without options the trees are in the page cache and the sweep is CPU-bound.
Two I/O-bound cases: `--cold` drops the kernel's caches before each timed
command (root only), so directories and inodes come from the disk;
`--latency-ms N` serves the trees through bench/slowfs.py, a FUSE passthrough
that waits N ms in every operation, like network storage (root only; installs
fuse3 and mfusepy when missing).

    .venv/bin/python bench/volumes_bench.py [--files 200000] [--dirs 2000] [--rounds 5]
        [--workers 1,2] [--cold | --latency-ms 0.5] [--big-files 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

OLD_DAYS, FRESH_DAYS, MAX_AGE_DAYS = 10, 1, 5


def build(root: Path, files: int, dirs: int) -> None:
    """`files` empty files spread over `dirs` directories; every other file is old."""
    now = time.time()
    old, fresh = now - OLD_DAYS * 86400, now - FRESH_DAYS * 86400
    per_dir = files // dirs
    root.mkdir(parents=True)
    for d in range(dirs):
        sub = os.path.join(root, f"d{d:05}")
        os.mkdir(sub)
        for f in range(per_dir):
            path = os.path.join(sub, f"f{f:05}.dat")
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            stamp = old if f % 2 == 0 else fresh
            os.utime(path, (stamp, stamp))
    os.sync()


def run_measured(argv: list[str]) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds of one command, as GNU time reports them.

    GNU time forks from a small process: a fork from this Python process would carry
    its own high-water mark into the child's ru_maxrss and hide the real figure.
    """
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%M %U %S", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{argv[0]} exited {proc.returncode}: {proc.stderr}")
        peak, user, system = report.read().split()[-3:]
    return elapsed, int(peak), float(user) + float(system)


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def write_config(path: Path, root: Path, workers: int) -> None:
    path.write_text(
        f'[[volumes]]\nname = "bench"\npath = "{root}"\nmax_age = "{MAX_AGE_DAYS}d"\n'
        f"workers = {workers}\n"
    )


@contextmanager
def slow_mount(backing: Path, latency_ms: float) -> Iterator[Path]:
    """`backing` served through bench/slowfs.py with `latency_ms` per operation."""
    if not shutil.which("fusermount3"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "fuse3"], check=True)
    if subprocess.run([sys.executable, "-c", "import mfusepy"], check=False).returncode:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "mfusepy"], check=True)
    mountpoint = backing.with_name("mnt")
    mountpoint.mkdir()
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("slowfs.py")),
            str(backing),
            str(mountpoint),
            str(latency_ms),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.ismount(mountpoint):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the FUSE server did not mount")
            time.sleep(0.05)
        yield mountpoint
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False)
        server.wait(timeout=10)


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--dirs", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big-files", type=int, default=1_000_000)
    parser.add_argument(
        "--workdir", default=None, help="where trees are built (default: a temp dir)"
    )
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts to time")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--cold", action="store_true", help="drop caches before each command")
    speed.add_argument(
        "--latency-ms", type=float, default=0, help="serve the trees through a slow FUSE mount"
    )
    args = parser.parse_args()

    cleanup = [sys.executable, "-m", "cleanup", "--log-level", "WARNING", "--config"]
    variants = [f"cleanup-w{n}" for n in (int(w) for w in args.workers.split(","))]
    names = ["find", *variants]
    work = Path(tempfile.mkdtemp(prefix="cleanup-bench-", dir=args.workdir))
    if args.latency_ms:
        cache = f"FUSE mount waiting {args.latency_ms} ms per operation (I/O-bound)"
    elif args.cold:
        cache = "cold caches (I/O-bound)"
    else:
        cache = "warm caches (CPU-bound)"
    print(
        f"tree: {args.files} files in {args.dirs} dirs, half older than {MAX_AGE_DAYS}d; "
        f"{args.rounds} rounds; {cache}"
    )
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    rss = dict.fromkeys(names, 0)
    backing = work / "backing"
    backing.mkdir()
    with ExitStack() as stack:
        # Trees are built and counted on the backing directory; the commands see them
        # through the slow mount when there is one.
        stack.callback(shutil.rmtree, work, ignore_errors=True)  # after the unmount
        view = (
            stack.enter_context(slow_mount(backing, args.latency_ms))
            if args.latency_ms
            else backing
        )
        for round_no in range(args.rounds):
            trees = {name: backing / f"{name}-{round_no}" for name in names}
            commands = {
                "find": [
                    "find",
                    str(view / trees["find"].name),
                    "-type",
                    "f",
                    "-mtime",
                    f"+{MAX_AGE_DAYS - 1}",
                    "-delete",
                ]
            }
            for name in variants:
                config = work / f"{name}.toml"
                write_config(config, view / trees[name].name, int(name.removeprefix("cleanup-w")))
                commands[name] = [*cleanup, str(config)]
            for tree in trees.values():
                build(tree, args.files, args.dirs)
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                if args.cold:
                    drop_caches()
                elapsed, peak, used = run_measured(commands[name])
                times[name].append(elapsed)
                cpu[name].append(used)
                rss[name] = max(rss[name], peak)
            left = {name: count_files(tree) for name, tree in trees.items()}
            if set(left.values()) != {args.files // 2}:
                raise SystemExit(f"trees differ after the round: {left}")
            for tree in trees.values():
                shutil.rmtree(tree)
            print(
                f"  round {round_no + 1}: "
                + ", ".join(f"{name} {times[name][-1]:.3f}s" for name in names)
            )
        med = {name: statistics.median(values) for name, values in times.items()}
        for name in names:
            print(
                f"{name:>12}: median wall {med[name]:.3f}s "
                f"({med[name] / med['find']:.2f}x find), "
                f"median CPU {statistics.median(cpu[name]):.3f}s, "
                f"peak RSS {rss[name] / 1024:.1f} MiB"
            )
        for name in variants if args.big_files else []:
            big = backing / "big"
            build(big, args.big_files, args.big_files // 100)
            config = work / "big.toml"
            write_config(config, view / big.name, int(name.removeprefix("cleanup-w")))
            elapsed, peak, _used = run_measured([*cleanup, str(config)])
            print(
                f"{args.big_files} files, {name}: {elapsed:.2f}s, peak RSS {peak / 1024:.1f} MiB "
                f"({peak / rss[name]:.2f}x the {args.files}-file figure)"
            )
            shutil.rmtree(big)
    return 0


if __name__ == "__main__":
    sys.exit(main())
