"""Volume benchmark: this tool vs GNU `find -mtime +N -delete` on identical trees, in one run.

Each round rebuilds two identical trees (outside the timed part), then times
`cleanup` (a cold process, as a CronJob runs it) and `find` on them, in
alternating order. Prints the median wall time of each, the ratio and each
command's peak RSS; then sweeps a larger tree once to show memory stays flat.

    .venv/bin/python bench/volumes_bench.py [--files 200000] [--dirs 2000] [--rounds 5]
        [--big-files 1000000]
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
    args = parser.parse_args()

    cleanup = [
        sys.executable,
        "-m",
        "cleanup",
        "--max-age",
        f"{MAX_AGE_DAYS}d",
        "--log-level",
        "WARNING",
    ]
    work = Path(tempfile.mkdtemp(prefix="cleanup-bench-", dir=args.workdir))
    print(
        f"tree: {args.files} files in {args.dirs} dirs, half older than {MAX_AGE_DAYS}d; {args.rounds} rounds"
    )
    times: dict[str, list[float]] = {"cleanup": [], "find": []}
    rss: dict[str, int] = {"cleanup": 0, "find": 0}
    cpu: dict[str, list[float]] = {"cleanup": [], "find": []}
    try:
        for round_no in range(args.rounds):
            trees = {name: work / f"{name}-{round_no}" for name in times}
            for tree in trees.values():
                build(tree, args.files, args.dirs)
            commands = {
                "cleanup": [*cleanup],
                "find": [
                    "find",
                    str(trees["find"]),
                    "-type",
                    "f",
                    "-mtime",
                    f"+{MAX_AGE_DAYS - 1}",
                    "-delete",
                ],
            }
            order = list(times) if round_no % 2 == 0 else list(reversed(times))
            for name in order:
                env_root = str(trees["cleanup"])
                if name == "cleanup":
                    os.environ["CLEANUP_VOLUMES"] = env_root
                elapsed, peak, used = run_measured(commands[name])
                times[name].append(elapsed)
                cpu[name].append(used)
                rss[name] = max(rss[name], peak)
            left = {name: count_files(tree) for name, tree in trees.items()}
            if left["cleanup"] != left["find"] or left["find"] != args.files // 2:
                raise SystemExit(f"trees differ after the round: {left}")
            for tree in trees.values():
                shutil.rmtree(tree)
            print(
                f"  round {round_no + 1}: cleanup {times['cleanup'][-1]:.3f}s, find {times['find'][-1]:.3f}s"
            )
        med = {name: statistics.median(values) for name, values in times.items()}
        print(
            f"median wall: cleanup {med['cleanup']:.3f}s, find {med['find']:.3f}s, "
            f"ratio cleanup/find = {med['cleanup'] / med['find']:.2f}x"
        )
        print(
            f"median CPU (user+sys): cleanup {statistics.median(cpu['cleanup']):.3f}s, "
            f"find {statistics.median(cpu['find']):.3f}s"
        )
        print(
            f"peak RSS: cleanup {rss['cleanup'] / 1024:.1f} MiB, find {rss['find'] / 1024:.1f} MiB"
        )
        if args.big_files:
            big = work / "big"
            build(big, args.big_files, args.big_files // 100)
            os.environ["CLEANUP_VOLUMES"] = str(big)
            elapsed, peak, _used = run_measured([*cleanup])
            print(
                f"{args.big_files} files: cleanup {elapsed:.2f}s, peak RSS {peak / 1024:.1f} MiB "
                f"({peak / rss['cleanup']:.2f}x the {args.files}-file figure)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
