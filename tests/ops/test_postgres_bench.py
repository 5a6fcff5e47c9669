"""The PostgreSQL benchmark (bench/postgres_bench.py) still runs and reports what the docs quote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_postgres_bench_small_table_reports_ratio_and_longest_transaction() -> None:
    """On a small table the benchmark times both processes in alternation, checks the target
    deleted every eligible row, and prints rates, the ratio and the longest transaction."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "postgres_bench.py"),
            "--rows=20000",
            "--rounds=1",
            "--fast",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert [len(report["runs"][k]) for k in ("cleanup", "psql")] == [1, 1]
    (tool,) = report["runs"]["cleanup"]
    assert tool["deleted"] == 10000 and tool["transactions"] >= 2
    assert report["psql_median_rows_per_s"] > 0 and report["ratio"] > 0
    assert report["cleanup_longest_transaction_ms"] > 0
    assert report["runs"]["psql"][0]["wal_bytes"] > 0
