"""Benchmark: the postgres target against one plain DELETE run by psql, as whole processes.

The workload (issue 14): `jobs(id bigserial primary key, status text, created_at
timestamptz, payload text)` with an index on created_at; ids 1 to N/2 are
`completed` and 31 to 90 days old, the rest 0 to 29 days old with mixed statuses
(default N = 2,000,000). Each run builds a fresh table (not timed), then times one
process:

- `psql -c "DELETE FROM jobs WHERE created_at < now() - interval '30 days' AND status = ANY(...)"`,
- `python -m cleanup` with one postgres target on `jobs` (max_age 30d, default batch_size).

Runs alternate (cleanup, psql, cleanup, ...), --rounds of each. While a process runs, a
sampler reads pg_stat_activity every 20 ms and keeps the longest transaction it saw of
that process's backend (a lower bound, up to one sample short); the target's own
`longest_transaction_ms` (BEGIN to COMMIT as its client saw it) is an upper bound.
The target also reports the WAL it wrote and its commits (pg_stat_wal / pg_stat_database
before and after). It prints one JSON object. From the repository root:

    .venv/bin/python bench/postgres_bench.py [--rows N] [--rounds N] [--fast]

The server is a throwaway one (tests/support/pgserver.py) with initdb's durability
defaults (fsync, synchronous_commit and full_page_writes on) unless --fast is given;
shared_buffers 1GB and max_wal_size 8GB keep cache misses and checkpoints out of both
measurements alike. Autovacuum is off on the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402 (after the sys.path line)

from tests.support.pgserver import _binaries, postgres_server  # noqa: E402

STATUSES = ["completed", "failed", "cancelled"]
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
SERVER = {"shared_buffers": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"}
PLAIN = (
    "DELETE FROM jobs WHERE created_at < now() - interval '30 days'"
    " AND status = ANY(ARRAY['completed','failed','cancelled'])"
)
SAMPLE_S = 0.02


def build(conn: psycopg.Connection[Any], rows: int) -> int:
    """A fresh `jobs` table of the issue's workload; returns the eligible row count."""
    old = rows // 2
    conn.execute("DROP TABLE IF EXISTS jobs")
    conn.execute(
        "CREATE TABLE jobs (id bigserial PRIMARY KEY, status text, created_at timestamptz,"
        " payload text) WITH (autovacuum_enabled = false)"
    )
    conn.execute(
        "INSERT INTO jobs (status, created_at, payload)"
        " SELECT 'completed', now() - interval '31 days' - interval '59 days' * random(),"
        "        md5(i::text) FROM generate_series(1, %s) AS i",
        (old,),
    )
    conn.execute(
        "INSERT INTO jobs (status, created_at, payload)"
        " SELECT (ARRAY['completed','failed','cancelled','running','queued'])[1 + i %% 5],"
        "        now() - interval '29 days' * random(), md5(i::text)"
        " FROM generate_series(1, %s) AS i",
        (rows - old,),
    )
    conn.execute("CREATE INDEX ON jobs (created_at)")
    conn.execute("VACUUM ANALYZE jobs")
    conn.execute("CHECKPOINT")
    row = conn.execute(
        "SELECT count(*) FROM jobs WHERE created_at < now() - interval '30 days'"
        " AND status = ANY(%s)",
        (STATUSES,),
    ).fetchone()
    assert row is not None
    return int(row[0])


class Sampler:
    """The longest transaction of backends named `application`, read every 20 ms."""

    def __init__(self, dsn: str, application: str) -> None:
        self.dsn, self.application = dsn, application
        self.longest_ms = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._conn = psycopg.connect(self.dsn, autocommit=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        query = (
            "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)"
            " FROM pg_stat_activity WHERE application_name = %s AND xact_start IS NOT NULL"
        )
        while not self._stop.wait(SAMPLE_S):
            row = self._conn.execute(query, (self.application,)).fetchone()
            self.samples += 1
            if row:
                self.longest_ms = max(self.longest_ms, float(row[0]) * 1000)


def server_counters(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    row = conn.execute(
        "SELECT (SELECT wal_bytes FROM pg_stat_wal)::bigint,"
        " (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())::bigint"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def timed(argv: list[str], env: dict[str, str], dsn: str, application: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        wal0, commits0 = server_counters(conn)
        with Sampler(dsn, application) as sampler:
            began = time.monotonic()
            proc = subprocess.run(
                argv, env=env, cwd=REPO, capture_output=True, text=True, check=False
            )
            elapsed = time.monotonic() - began
        # A backend reports its WAL and commits as it exits, just after its client did.
        time.sleep(1.5)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        wal1, commits1 = server_counters(conn)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    return {
        "seconds": elapsed,
        "stdout": proc.stdout,
        "sampled_longest_transaction_ms": round(sampler.longest_ms, 1),
        "wal_bytes": wal1 - wal0,
        # The sampler's own reads commit too: one per sample.
        "commits": commits1 - commits0 - sampler.samples,
    }


def run_cleanup(dsn: str, workdir: Path) -> dict[str, Any]:
    config = workdir / "bench.toml"
    config.write_text('[[postgres]]\nname = "jobs"\ntable = "jobs"\nmax_age = "30d"\n')
    env = {**os.environ, "CLEANUP_DATABASE_URL": dsn}
    argv = [sys.executable, "-m", "cleanup", "--config", str(config), "--log-format", "json"]
    out = timed(argv, env, dsn, "cleanup")
    lines = [json.loads(line) for line in out.pop("stdout").splitlines() if line.strip()]
    target = next(e for e in lines if e.get("event") == "target_finished")
    stats = next(e for e in lines if e.get("event") == "batches_finished")
    assert target["status"] == "ok", target
    return {
        **out,
        "deleted": int(target["deleted"]),
        "transactions": int(stats["transactions"]),
        "client_longest_transaction_ms": float(stats["longest_transaction_ms"]),
    }


def run_psql(dsn: str) -> dict[str, Any]:
    psql = str(_binaries() / "psql")
    env = {**os.environ, "PGAPPNAME": "bench_psql"}
    out = timed([psql, dsn, "-X", "-q", "-c", PLAIN], env, dsn, "bench_psql")
    out.pop("stdout")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each (alternating)")
    parser.add_argument("--fast", action="store_true", help="fsync off (test-server settings)")
    args = parser.parse_args()
    settings = dict(SERVER) if args.fast else {**SERVER, **DURABLE}
    runs: dict[str, list[dict[str, Any]]] = {"cleanup": [], "psql": []}
    with postgres_server(settings) as dsn, tempfile.TemporaryDirectory() as tmp:
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        for i in range(2 * args.rounds):
            which = "cleanup" if i % 2 == 0 else "psql"
            with psycopg.connect(dsn, autocommit=True) as conn:
                expected = build(conn, args.rows)
            result = run_cleanup(dsn, Path(tmp)) if which == "cleanup" else run_psql(dsn)
            if which == "cleanup":
                assert result["deleted"] == expected, (result["deleted"], expected)
            result["rows_per_s"] = round(expected / result["seconds"])
            result["seconds"] = round(result["seconds"], 3)
            runs[which].append(result)
    tool = statistics.median(r["rows_per_s"] for r in runs["cleanup"])
    plain = statistics.median(r["rows_per_s"] for r in runs["psql"])
    print(
        json.dumps(
            {
                "server_version": version[0] if version else None,
                "durable": not args.fast,
                "rows": args.rows,
                "runs": runs,
                "cleanup_median_rows_per_s": tool,
                "psql_median_rows_per_s": plain,
                "ratio": round(tool / plain, 3),
                "cleanup_longest_transaction_ms": max(
                    max(r["sampled_longest_transaction_ms"], r["client_longest_transaction_ms"])
                    for r in runs["cleanup"]
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
