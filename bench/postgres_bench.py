"""Benchmark: the postgres target against one plain DELETE on an identical copy.

Builds a job table (default 2,000,000 rows, half of them eligible: old and
finished, interleaved with fresh finished rows and old running rows, with an
index on created_at), copies it, then in one run times

- `DELETE FROM copy WHERE created_at < cutoff AND status = ANY(statuses)` (one statement),
- the cleanup CLI's postgres target on the original (batches of --batch-size).

It prints one JSON object: rows/s of each, their ratio, and the longest single
transaction the target held (BEGIN to COMMIT as its client saw it, an upper
bound of the server-side time). Usage, from the repository root:

    .venv/bin/python bench/postgres_bench.py [--rows N] [--batch-size N] [--rounds N]

Autovacuum is off on both tables, and rounds alternate which delete runs first.
It starts its own throwaway server (tests/support/pgserver.py) with durable
settings (fsync and synchronous_commit on) unless --fast is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from tests.support.cli import run_cli
from tests.support.pgserver import postgres_server

STATUSES = ["completed", "failed", "cancelled"]
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
SERVER = {"shared_buffers": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"}


def build(conn: psycopg.Connection[Any], rows: int) -> None:
    conn.execute("DROP TABLE IF EXISTS bench_target, bench_plain")
    conn.execute(
        "CREATE TABLE bench_target (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,"
        " status text NOT NULL, payload text)"
    )
    # Even ids: old and finished (eligible). id % 4 = 1: fresh and finished. id % 4 = 3:
    # old and running. So exactly half the rows are eligible, spread over every block.
    conn.execute(
        "INSERT INTO bench_target (created_at, status, payload)"
        " SELECT CASE WHEN i %% 4 = 1 THEN now() - interval '1 day' * (i %% 20) / 20"
        "             ELSE now() - interval '40 days' - interval '1 second' * (i %% 86400) END,"
        "        CASE WHEN i %% 4 = 3 THEN 'running' ELSE (ARRAY['completed','failed','cancelled'])"
        "             [1 + (i / 2) %% 3] END,"
        "        md5(i::text)"
        " FROM generate_series(1, %s) AS i",
        (rows,),
    )
    conn.execute("CREATE INDEX ON bench_target (created_at)")
    # Autovacuum would start on whichever table was deleted from first and steal a
    # CPU from the other measurement; the benchmark compares the deletes alone.
    conn.execute("ALTER TABLE bench_target SET (autovacuum_enabled = false)")
    conn.execute("CREATE TABLE bench_plain (LIKE bench_target INCLUDING ALL)")
    conn.execute("ALTER TABLE bench_plain SET (autovacuum_enabled = false)")
    conn.execute("INSERT INTO bench_plain SELECT * FROM bench_target ORDER BY id")
    conn.execute("VACUUM ANALYZE bench_target")
    conn.execute("VACUUM ANALYZE bench_plain")
    conn.execute("CHECKPOINT")


def eligible(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM {table}"
        " WHERE created_at < now() - interval '30 days' AND status = ANY(%s)",
        (STATUSES,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def plain_delete(conn: psycopg.Connection[Any]) -> tuple[int, float]:
    began = time.monotonic()
    deleted = conn.execute(
        "DELETE FROM bench_plain WHERE created_at < now() - interval '30 days'"
        " AND status = ANY(%s)",
        (STATUSES,),
    ).rowcount
    return deleted, time.monotonic() - began


def target_delete(dsn: str, batch_size: int, workdir: Path) -> tuple[int, float, float, int]:
    config = workdir / "bench.toml"
    config.write_text(
        "[[postgres]]\n"
        'name = "bench"\n'
        'table = "bench_target"\n'
        'max_age = "30d"\n'
        f"batch_size = {batch_size}\n"
    )
    result = run_cli(["--config", str(config)], {"CLEANUP_DATABASE_URL": dsn})
    target = result.target("bench")
    assert target["status"] == "ok", result.stdout
    stats = result.one("batches_finished")
    return (
        int(target["deleted"]),
        float(target["duration_s"]),
        float(stats["longest_transaction_ms"]),
        int(stats["transactions"]),
    )


def one_round(
    dsn: str, rows: int, batch_size: int, workdir: Path, target_first: bool
) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        build(conn, rows)
        expected = eligible(conn, "bench_target")
        assert expected == eligible(conn, "bench_plain")
        if target_first:
            target_rows, target_s, longest_ms, batches = target_delete(dsn, batch_size, workdir)
            conn.execute("CHECKPOINT")
        plain_rows, plain_s = plain_delete(conn)
        conn.execute("CHECKPOINT")
        if not target_first:
            target_rows, target_s, longest_ms, batches = target_delete(dsn, batch_size, workdir)
    assert plain_rows == target_rows == expected, (plain_rows, target_rows, expected)
    plain_rate, target_rate = plain_rows / plain_s, target_rows / target_s
    return {
        "rows": rows,
        "deleted": target_rows,
        "first": "target" if target_first else "plain",
        "plain_delete_s": round(plain_s, 3),
        "plain_delete_rows_per_s": round(plain_rate),
        "target_s": round(target_s, 3),
        "target_rows_per_s": round(target_rate),
        "ratio": round(target_rate / plain_rate, 3),
        "transactions": batches,
        "batch_size": batch_size,
        "longest_transaction_ms": longest_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--fast", action="store_true", help="fsync off (test-server settings)")
    args = parser.parse_args()
    settings = dict(SERVER) if args.fast else {**SERVER, **DURABLE}
    with postgres_server(settings) as dsn, tempfile.TemporaryDirectory() as tmp:
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        results = [
            # Alternate which delete runs first, so cache and checkpoint effects even out.
            one_round(dsn, args.rows, args.batch_size, Path(tmp), target_first=bool(i % 2))
            for i in range(args.rounds)
        ]
    print(
        json.dumps(
            {
                "server_version": version[0] if version else None,
                "durable": not args.fast,
                "rounds": results,
                "median_ratio": round(statistics.median(r["ratio"] for r in results), 3),
                "max_transaction_ms": max(r["longest_transaction_ms"] for r in results),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
