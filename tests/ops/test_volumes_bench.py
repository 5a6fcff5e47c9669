"""The volume benchmark (bench/volumes_bench.py) still runs and reports what docs/benchmarks.md quotes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_volumes_bench_small_tree_reports_ratio_and_memory_per_worker_count(
    tmp_path: Path,
) -> None:
    """On a small tree the benchmark checks all trees end alike and prints each variant's ratio and RSS."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "volumes_bench.py"),
            "--files=600",
            "--dirs=6",
            "--rounds=1",
            "--workers=1,2",
            "--big-files=1200",
            f"--workdir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("find", "cleanup-w1", "cleanup-w2"):
        line = re.search(
            rf"{name}: median wall ([\d.]+)s \(([\d.]+)x find\).*peak RSS ([\d.]+) MiB", proc.stdout
        )
        assert line, proc.stdout
        assert float(line.group(1)) > 0 and float(line.group(3)) > 1
    assert len(re.findall(r"1200 files, cleanup-w\d: .* peak RSS", proc.stdout)) == 2, proc.stdout
    assert not list(tmp_path.iterdir()), "the benchmark left its trees behind"
