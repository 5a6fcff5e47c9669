"""One-command demo of cleanup on all three stores: volumes, an S3 prefix, a PostgreSQL table.

It starts what it needs on 127.0.0.1 (moto's S3 server in this process; a throwaway
PostgreSQL from the local binaries, unless CLEANUP_DATABASE_URL points at one),
seeds old and fresh files, objects and rows, runs the real `cleanup` command twice
(a dry run, then a real run), prints its JSON lines and a summary table after each,
shows what is left, and removes everything it created. Nothing keeps running.

Run it with `bash scripts/demo.sh` (which prepares .venv first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.pgserver import postgres_server  # noqa: E402
from tests.support.s3server import S3Endpoint, moto_thread  # noqa: E402

BUCKET = "demo-media"
TABLE = "demo_jobs"
OLD = timedelta(days=40)
DAY = 86400


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def seed_volumes(root: Path) -> None:
    """Two volume roots, temp/ and output/, with files and directories of various ages (days)."""
    now = time.time()
    layout = {
        "temp/upload-1.part": 3,
        "temp/upload-2.part": 0.2,
        "temp/session/old.lock": 9,
        "temp/session/cache.bin": 12,
        "output/job-41/result.csv": 15,
        "output/job-41/log.txt": 15,
        "output/job-42/result.csv": 0.5,
        "output/.keep": 400,
    }
    for rel, days in layout.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("demo data\n" * 100)
        stamp = now - days * DAY
        os.utime(path, (stamp, stamp))
    # Directories the real run empties go too (remove_empty_dirs), as they are old.
    for rel in ("temp/session", "output/job-41"):
        stamp = now - 20 * DAY
        os.utime(root / rel, (stamp, stamp))


def seed_s3(endpoint: S3Endpoint) -> None:
    """Objects under output/ (old and fresh) and one old object outside the prefix."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    client = endpoint.client()
    client.create_bucket(Bucket=BUCKET)
    old = [f"output/2024/frame-{i:03}.png" for i in range(6)] + ["archive/report.pdf"]
    fresh = [f"output/today/frame-{i:03}.png" for i in range(3)]
    for key in old + fresh:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"p" * 10_000)
    # S3 sets LastModified itself; the demo's S3 server is moto in this very process, so
    # the old objects are backdated in its store instead of waiting 40 days.
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    backdated = datetime.now(UTC).replace(tzinfo=None) - OLD
    for key in old:
        backend.get_object(BUCKET, key).last_modified = backdated


@contextmanager
def database() -> Iterator[str]:
    """CLEANUP_DATABASE_URL if set (the demo table is dropped after), else a throwaway server."""
    given = os.environ.get("CLEANUP_DATABASE_URL", "")
    if given:
        yield given
    else:
        with postgres_server() as dsn:
            yield dsn


def sql(text: str) -> Any:
    """A statement with the demo table's name quoted in place of {table}."""
    from psycopg import sql as pgsql

    return pgsql.SQL(text).format(table=pgsql.Identifier(TABLE))


def seed_postgres(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql("DROP TABLE IF EXISTS {table}"))
        conn.execute(
            sql(
                "CREATE TABLE {table} (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,"
                " status text NOT NULL, payload text)"
            )
        )
        conn.execute(sql("CREATE INDEX ON {table} (created_at)"))
        rows = [
            ("40 days", "completed", 300),
            ("40 days", "failed", 50),
            ("40 days", "running", 20),  # unfinished: never deleted, however old
            ("1 hour", "completed", 100),
        ]
        for age, status, count in rows:
            conn.execute(
                sql(
                    "INSERT INTO {table} (created_at, status, payload)"
                    " SELECT now() - %s::interval, %s, 'x' FROM generate_series(1, %s)"
                ),
                (age, status, count),
            )


def drop_table(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql("DROP TABLE IF EXISTS {table}"))


def write_config(path: Path, volumes: Path, endpoint: S3Endpoint) -> None:
    path.write_text(
        f"""max_age = "7d"

[[volumes]]
name = "temp"
path = {json.dumps(str(volumes / "temp"))}
max_age = "1d"
remove_empty_dirs = true

[[volumes]]
name = "output"
path = {json.dumps(str(volumes / "output"))}
exclude = [".keep"]
remove_empty_dirs = true

[[s3]]
name = "renders"
bucket = "{BUCKET}"
prefix = "output/"
endpoint_url = "{endpoint.url}"

[[postgres]]
name = "jobs"
table = "{TABLE}"
max_age = "30d"
"""
    )


def run(config: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    """Run the real CLI, echo its JSON lines, return its run_finished line."""
    argv = [sys.executable, "-m", "cleanup", "--config", str(config), *extra]
    print("$ cleanup --config demo.toml " + " ".join(extra), flush=True)
    began = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - began
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = lines[-1]
    assert summary["event"] == "run_finished", proc.stdout
    print(f"(exit code {proc.returncode}, {elapsed:.1f} s)")
    return summary


def table(summary: dict[str, Any]) -> str:
    """The run's targets as a text table, with a total row."""
    head = ("target", "kind", "status", "scanned", "matched", "deleted", "failed", "bytes freed")
    rows = [
        (
            t["target"],
            t["kind"],
            t["status"],
            *(str(t[c]) for c in ("scanned", "matched", "deleted", "failed", "bytes_freed")),
        )
        for t in summary["targets"]
    ]
    rows.append(
        (
            "total",
            "",
            summary["status"],
            *(str(summary[c]) for c in ("scanned", "matched", "deleted", "failed", "bytes_freed")),
        )
    )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def fmt(row: tuple[str, ...]) -> str:
        cells = [
            cell.ljust(width) if i < 3 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    mode = "dry run" if summary["dry_run"] else "real run"
    return "\n".join(
        [f"{mode}: {summary['status']}, exit {summary['exit_code']}", fmt(head), rule]
        + [fmt(r) for r in rows[:-1]]
        + [rule, fmt(rows[-1])]
    )


def leftovers(volumes: Path, endpoint: S3Endpoint, dsn: str) -> str:
    import psycopg

    files = sorted(str(p.relative_to(volumes)) for p in volumes.rglob("*") if p.is_file())
    client = endpoint.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))
    with psycopg.connect(dsn, autocommit=True) as conn:
        counts = conn.execute(
            sql(
                "SELECT status, created_at < now() - interval '30 days', count(*) FROM {table}"
                " GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ).fetchall()
    rows = ", ".join(f"{n} {s}{' (old)' if old else ''}" for s, old, n in counts)
    return (
        f"volume files: {', '.join(files)}\nS3 objects:   {', '.join(keys)}\njob rows:     {rows}"
    )


def main() -> int:
    began = time.monotonic()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cleanup-demo-")))
        volumes = work / "volumes"
        say("starting a local S3 server (moto) and PostgreSQL on 127.0.0.1")
        endpoint = stack.enter_context(moto_thread())
        dsn = stack.enter_context(database())
        stack.callback(drop_table, dsn)
        where = urlsplit(dsn)
        print(f"S3 endpoint {endpoint.url}; PostgreSQL {where.hostname}:{where.port}")
        say("seeding old and fresh files, S3 objects and job rows")
        seed_volumes(volumes)
        seed_s3(endpoint)
        seed_postgres(dsn)
        config = work / "demo.toml"
        write_config(config, volumes, endpoint)
        # The file itself is shown after the runs: the first screen is the job.
        print(
            "demo.toml: volumes temp (1d) and output (7d, .keep excluded), S3 renders"
            f" (s3://{BUCKET}/output/, 7d), PostgreSQL jobs (table {TABLE}, 30d)"
        )
        say("before the runs")
        print(leftovers(volumes, endpoint, dsn))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CLEANUP_DATABASE_URL": dsn,
            **endpoint.credentials_env(),
        }
        say("dry run: reports what would go, deletes nothing")
        dry = run(config, env, "--dry-run")
        say("real run")
        real = run(config, env)
        say("summary")
        print(table(dry))
        print()
        print(table(real))
        say(
            "what is left: fresh items, the excluded .keep, the object outside the prefix, unfinished jobs"
        )
        print(leftovers(volumes, endpoint, dsn))
        say("the configuration both runs read (demo.toml)")
        print(config.read_text(), end="")
        ok = dry["exit_code"] == 0 and real["exit_code"] == 0
        ok = ok and dry["matched"] == real["deleted"] > 0
    print(f"\ndemo finished in {time.monotonic() - began:.1f} s; servers stopped, files removed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
