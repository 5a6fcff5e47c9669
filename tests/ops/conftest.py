"""Real log lines for the field-coverage tests: the tool run on real data in every outcome.

One session fixture runs the real CLI several times (volumes on tmp trees: ok,
partial through an immutable file (predicted by the dry run), failed through
`require_mount`, an empty root (a target_warning), capped (exit 3) and a capped
dry run (its backlog, and a config_warning), a dry run, a preflight, a
configuration error, a run stopped by SIGTERM; a PostgreSQL table on a throwaway
server, also read by a role without DELETE (a predicted failure) and with a
statuses typo (a target_warning); an S3 prefix on the local S3 server, one
that holds nothing (a target_warning) and one behind a proxy that throttles (an
s3_throttled warning)) and collects every JSON line it printed. The dashboards,
pipeline and alerts are then checked against
these lines, never against a list of names typed into a test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.conftest import helm  # noqa: F401  (the Helm 3 / Helm 4 fixture, reused)
from tests.support.cli import Child, run_cli

REPO = Path(__file__).resolve().parents[2]
DAY = 86400
# What the downward API gives a pod of the chart's CronJob (release `rel`, namespace `apps`).
DOWNWARD = {
    "POD_NAME": "rel-cleanup-29410000-x7k2p",
    "POD_NAMESPACE": "apps",
    "JOB_NAME": "rel-cleanup-29410000",
}


@dataclass
class Emitted:
    """Every JSON line of every run, and each run's exit code in order."""

    lines: list[dict[str, Any]]
    exit_codes: list[int]

    def values(self, field: str, event: str | None = None) -> set[Any]:
        return {
            json.dumps(line[field]) if isinstance(line[field], list | dict) else line[field]
            for line in self.lines
            if field in line and (event is None or line.get("event") == event)
        }


def _old(path: Path, days: float = 30) -> None:
    stamp = time.time() - days * DAY
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def _tree(root: Path, old: int, fresh: int, size: int = 100) -> None:
    for index in range(old):
        path = root / f"sub{index % 3}" / f"old-{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        _old(path)
    for index in range(fresh):
        (root / f"fresh-{index}.txt").write_text("keep")


def _config(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _volumes_runs(base: Path, emitted: Emitted) -> None:
    """ok, partial, failed, a dry run, capped, a preflight and a configuration error, on volumes."""
    names = ("scratch", "reports", "mounted", "cap", "empty")
    scratch, reports, mounted, capped, empty = (base / n for n in names)
    for root in (scratch, reports, mounted, capped, empty):
        root.mkdir()
    _tree(scratch, old=6, fresh=2)
    _tree(reports, old=2, fresh=1, size=2048)
    _tree(capped, old=3, fresh=0)
    stuck = reports / "stuck.log"
    stuck.write_text("immutable")
    _old(stuck)
    config = _config(
        base / "volumes.toml",
        f'max_age = "7d"\n'
        f'[[volumes]]\nname = "scratch"\npath = "{scratch}"\nremove_empty_dirs = true\n'
        f'[[volumes]]\nname = "reports"\npath = "{reports}"\n'
        f'[[volumes]]\nname = "mounted"\npath = "{mounted}"\nrequire_mount = true\n'
        # An empty root: what an unmounted volume looks like (a `root_empty` warning).
        f'[[volumes]]\nname = "empty"\npath = "{empty}"\n',
    )
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode != 0:
        pytest.fail("chattr +i failed: the `partial` status cannot be produced on this filesystem")
    try:
        for argv in (["--dry-run"], []):
            result = run_cli(["--config", config, "--log-level", "DEBUG", *argv], DOWNWARD)
            emitted.lines += result.lines
            emitted.exit_codes.append(result.exit_code)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    capped_config = _config(
        base / "capped.toml", f'[[volumes]]\nname = "capped"\npath = "{capped}"\nmax_age = "1d"\n'
    )
    preflight_config = _config(
        base / "preflight.toml",
        f'max_age = "1d"\n[[volumes]]\nname = "ready"\npath = "{capped}"\n'
        f'[[volumes]]\nname = "unmounted"\npath = "{base / "never-created"}"\n',
    )
    runs = (
        # A preview of the cap: `capped` with the backlog, and a --days that no target
        # uses (each sets its own max_age): a config_warning.
        ["--config", capped_config, "--dry-run", "--max-deletions", "1", "--days", "3"],
        ["--config", capped_config, "--max-deletions", "1"],  # capped: exit 3
        ["--config", capped_config],  # the rest of the same tree: a run that ends `ok`
        ["--config", preflight_config, "--preflight"],  # one root ready, one missing
        ["--config", str(base / "absent.toml")],
    )
    for argv in runs:
        result = run_cli(argv, DOWNWARD)
        emitted.lines += result.lines
        emitted.exit_codes.append(result.exit_code)


def _interrupted_run(base: Path, emitted: Emitted) -> None:
    """A real process stopped by SIGTERM mid-sweep: `interrupted`, and `skipped` after it."""
    # 2,000 files and a pipe nobody reads until the first item_deleted line: the child
    # blocks once the pipe buffer (64 KiB, a few hundred lines) is full, so the signal
    # always lands mid-sweep, however fast the machine.
    big = base / "big"
    for index in range(20):
        sub = big / f"d{index:03}"
        sub.mkdir(parents=True)
        for name in range(100):
            path = sub / f"f{name}"
            path.write_bytes(b"")
            _old(path)
    after = base / "after"
    after.mkdir()
    config = _config(
        base / "interrupted.toml",
        f'max_age = "1d"\n[[volumes]]\nname = "big"\npath = "{big}"\n'
        f'[[volumes]]\nname = "after"\npath = "{after}"\n',
    )
    env = {**os.environ, **DOWNWARD}
    proc = Child(["--config", config, "--log-level", "DEBUG"], env=env, cwd=str(base))
    lines: list[dict[str, Any]] = []
    signalled = False
    for raw in proc.stdout:
        lines.append(json.loads(raw))
        if lines[-1]["event"] == "item_deleted" and not signalled:
            proc.send_signal(signal.SIGTERM)
            signalled = True
    code, rest = proc.ended(timeout=60)
    lines += [json.loads(raw) for raw in rest.splitlines()]
    emitted.lines += lines
    emitted.exit_codes.append(code)


def _run_stores(config: str, env: dict[str, str], emitted: Emitted) -> None:
    for argv in (["--dry-run"], []):
        result = run_cli(["--config", config, "--log-level", "DEBUG", *argv], {**DOWNWARD, **env})
        emitted.lines += result.lines
        emitted.exit_codes.append(result.exit_code)


def _postgres_runs(base: Path, emitted: Emitted) -> None:
    """A job table with old finished, old running and fresh rows: a dry run, then a real run;
    before them, a dry run of a role without DELETE and of a statuses typo."""
    import psycopg

    from tests.support.pgserver import postgres_server

    with postgres_server() as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE jobs (id bigserial PRIMARY KEY, created_at timestamptz, status text)"
            )
            conn.execute("CREATE INDEX ON jobs (created_at)")
            conn.execute(
                "INSERT INTO jobs (created_at, status) SELECT now() - interval '60 days',"
                " s FROM unnest(array['completed', 'failed', 'running']) s"
            )
            conn.execute("INSERT INTO jobs (created_at, status) VALUES (now(), 'completed')")
            # A role that may read but not delete: its dry run predicts the failure.
            conn.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
            conn.execute("GRANT SELECT ON jobs TO reader")
        admin = urlsplit(dsn)
        reader = admin._replace(netloc=f"reader:reader-pw@{admin.hostname}:{admin.port}").geturl()
        mistakes = _config(
            base / "postgres-mistakes.toml",
            '[[postgres]]\nname = "readonly"\ntable = "jobs"\nmax_age = "30d"\n'
            'dsn_env = "READER_DATABASE_URL"\n'
            # A typo: no row has this status, so the target can never match (a warning).
            '[[postgres]]\nname = "typo"\ntable = "jobs"\nmax_age = "30d"\n'
            'statuses = ["complete"]\n',
        )
        env = {"CLEANUP_DATABASE_URL": dsn, "READER_DATABASE_URL": reader}
        result = run_cli(["--config", mistakes, "--dry-run"], {**DOWNWARD, **env})
        emitted.lines += result.lines
        emitted.exit_codes.append(result.exit_code)
        config = _config(
            base / "postgres.toml",
            '[[postgres]]\nname = "jobs"\ntable = "jobs"\nmax_age = "30d"\n',
        )
        _run_stores(config, {"CLEANUP_DATABASE_URL": dsn}, emitted)


def _s3_runs(base: Path, emitted: Emitted) -> None:
    """Old (backdated) and fresh objects under a prefix on local moto: a dry run, then a real run."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    from tests.support.faultproxy import fault_proxy, per_key_slow_down
    from tests.support.s3server import moto_thread

    with (
        moto_thread() as endpoint,
        fault_proxy(endpoint.url, before=[per_key_slow_down(0, first=1)]) as throttling,
        pytest.MonkeyPatch.context() as patch,
    ):
        # boto3 reads credentials from the process environment, not from run_cli's mapping.
        for name in endpoint.AMBIENT:
            patch.delenv(name, raising=False)
        for name, value in endpoint.credentials_env().items():
            patch.setenv(name, value)
        client = endpoint.client()
        client.create_bucket(Bucket="media")
        old = [f"output/old-{i}.png" for i in range(4)]
        for key in [*old, "output/fresh.png", "archive/old.png"]:
            client.put_object(Bucket="media", Key=key, Body=b"p" * 1000)
        # S3 sets LastModified itself; moto runs in this process, so backdate in its store.
        backdated = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)  # moto: naive UTC
        store = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        for key in [*old, "archive/old.png"]:
            store.get_object("media", key).last_modified = backdated
        config = _config(
            base / "s3.toml",
            f'[[s3]]\nname = "outputs"\nbucket = "media"\nprefix = "output/"\nmax_age = "7d"\n'
            f'endpoint_url = "{endpoint.url}"\n'
            # Nothing at all under this prefix: a `prefix_empty` warning.
            f'[[s3]]\nname = "nothing"\nbucket = "media"\nprefix = "thumbnails/"\n'
            f'max_age = "7d"\nendpoint_url = "{endpoint.url}"\n'
            # Through a proxy that throttles its first DeleteObjects: `s3_throttled`.
            f'[[s3]]\nname = "throttled"\nbucket = "media"\nprefix = "archive/"\n'
            f'max_age = "7d"\nendpoint_url = "{throttling.url}"\n',
        )
        _run_stores(config, {}, emitted)


@pytest.fixture(scope="session")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emitted]:
    base = tmp_path_factory.mktemp("ops-runs")
    result = Emitted([], [])
    try:
        _volumes_runs(base, result)
        _interrupted_run(base, result)
        _postgres_runs(base, result)
        _s3_runs(base, result)
        yield result
    finally:
        shutil.rmtree(base, ignore_errors=True)
