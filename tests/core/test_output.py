"""One log stream (docs/events-and-exit-codes.md): JSON lines only, readable summaries, redaction, the text format."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from cleanup.config import Settings
from cleanup.logs import configure
from cleanup.runner import finish, run
from cleanup.targets.base import TargetContext
from cleanup.targets.volumes.settings import VolumeSettings
from tests.support.cli import assert_json_only, run_cli
from tests.volumes.conftest import NOW, make

DSN = "postgresql://app:hunter2secret@db.example:5432/jobs"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    make(path, "old", 30, content="x" * 3000)
    make(path, "fresh", 1)
    return path


def _process(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cleanup", *argv],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]), **env},
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=60,
    )


@pytest.mark.parametrize("argv", [["--bogus"], ["--days"], ["--only", "s3", "--temp-only"]])
def test_main_bad_argument_is_a_json_config_error_not_stderr_text(
    tmp_path: Path, root: Path, argv: list[str]
) -> None:
    """A bad flag gives `config_error` then `run_finished` (exit 2) on stdout, nothing on stderr."""
    proc = _process(argv, {"CLEANUP_VOLUMES": str(root), "CLEANUP_MAX_AGE": "7d"}, tmp_path)
    lines = assert_json_only(proc.stdout, proc.stderr)
    assert proc.returncode == 2
    assert [line["event"] for line in lines] == ["config_error", "run_finished"]
    assert lines[0]["errors"][0].startswith("command line: ")
    assert lines[-1]["exit_code"] == 2
    assert (root / "old").exists()


def test_main_help_prints_text_and_exits_0(tmp_path: Path) -> None:
    """--help is for a person: usage text on stdout, exit 0."""
    proc = _process(["--help"], {}, tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: cleanup")
    assert "--preflight" in proc.stdout and "--target" in proc.stdout


def test_main_config_error_is_not_repeated_on_stderr(tmp_path: Path) -> None:
    """A configuration error is one JSON line and the summary; stderr stays empty."""
    proc = _process(["--config", str(tmp_path / "missing.toml")], {}, tmp_path)
    lines = assert_json_only(proc.stdout, proc.stderr)
    assert proc.returncode == 2
    assert [line["event"] for line in lines] == ["config_error", "run_finished"]


def test_main_summaries_are_readable_sentences(root: Path) -> None:
    """target_finished and run_finished messages summarise the outcome in human units."""
    result = run_cli([], {"CLEANUP_VOLUMES": str(root), "CLEANUP_MAX_AGE": "7d"}, now=NOW)
    assert result.target("data")["message"] == "data: ok, 1 deleted, 2.9 KiB freed in 0.0 s"
    assert result.summary["message"] == "run ok: 1 target; 1 deleted, 2.9 KiB freed in 0.0 s"


def test_main_dry_run_summary_says_would(root: Path) -> None:
    """A dry run's summary says what would be deleted, never that it was."""
    result = run_cli(
        ["--dry-run"], {"CLEANUP_VOLUMES": str(root), "CLEANUP_MAX_AGE": "7d"}, now=NOW
    )
    message = result.target("data")["message"]
    assert message == "data: ok (dry run), 1 would be deleted, 2.9 KiB would be freed in 0.0 s"


def test_main_target_finished_carries_cutoff_and_max_age(root: Path) -> None:
    """target_finished repeats the cutoff and gives the max age in seconds."""
    result = run_cli([], {"CLEANUP_VOLUMES": str(root), "CLEANUP_MAX_AGE": "36h"}, now=NOW)
    finished = result.target("data")
    assert (finished["cutoff"], finished["max_age_s"]) == ("2026-05-31T00:00:00.000Z", 129600)


def test_check_config_dsn_put_in_dsn_env_is_redacted(tmp_path: Path) -> None:
    """A DSN put in dsn_env by mistake is named as bad but never printed with its password."""
    config = tmp_path / "c.toml"
    config.write_text(
        f'max_age = "7d"\n[[postgres]]\nname = "p"\ntable = "jobs"\ndsn_env = "{DSN}"\n'
    )
    result = run_cli(["--config", str(config), "--check-config"])
    assert result.exit_code == 2
    (error,) = result.one("config_error")["errors"]
    assert "dsn_env" in error and "db.example" in error
    assert "hunter2secret" not in result.stdout


@pytest.mark.parametrize(
    "text",
    [
        "connect failed for postgresql://app:hunter2secret@db:5432/jobs",
        "conninfo host=db password=hunter2secret dbname=jobs",
        "libpq: password='hunter2secret' user=app",
        "https://user:hunter2secret@minio.local:9000",
    ],
)
def test_logs_any_message_or_field_with_a_secret_is_redacted(text: str) -> None:
    """Whatever carries it, a URL with credentials or a password= pair is not printed."""

    class Leaky:
        def run(self, ctx: TargetContext) -> None:
            ctx.event(30, "note", text, detail=[text], nested={"x": text})

    stream = io.StringIO()
    logger = configure("INFO", "json", {"run_id": "r"}, stream=stream)
    settings = Settings(targets=(VolumeSettings(name="a", path="/tmp", max_age=60),))
    run(settings, NOW, threading.Event(), logger, builder=lambda _s: Leaky())
    assert "hunter2secret" not in stream.getvalue()
    note = next(json.loads(x) for x in stream.getvalue().splitlines() if '"note"' in x)
    assert "<redacted>" in note["message"] and "<redacted>" in note["nested"]["x"]


def _text_run(targets: dict[str, Any]) -> list[str]:
    stream = io.StringIO()
    logger = configure("INFO", "text", {"run_id": "r"}, stream=stream)
    settings = Settings(
        targets=tuple(VolumeSettings(name=n, path="/tmp", max_age=86400) for n in targets)
    )
    results = run(settings, NOW, threading.Event(), logger, builder=lambda s: targets[s.name])
    finish(logger, "ok", 0, results, 0.5, False)
    return stream.getvalue().splitlines()


class _Counts:
    def __init__(self, deleted: int, size: int) -> None:
        self.deleted, self.size = deleted, size

    def run(self, ctx: TargetContext) -> None:
        ctx.counters.scanned = ctx.counters.matched = ctx.counters.deleted = self.deleted
        ctx.counters.bytes_freed = self.size
        ctx.event(20, "note", "a note", took_s=5400.0, size=self.size, names=["a", "b"])


def test_text_format_uses_human_units_and_ends_with_a_table() -> None:
    """--log-format text: sizes and durations in human units, no reprs, a summary table."""
    lines = _text_run({"big": _Counts(1204, 3_250_000), "small": _Counts(3, 10)})
    note = next(line for line in lines if "a note" in line)
    assert note.endswith("[big] a note  took_s=1 h 30 min size=3.1 MiB names=a, b")
    assert any(" big: ok, 1204 deleted, 3.1 MiB freed in 0.0 s  max_age_s=24 h" in x for x in lines)
    assert lines[-3:] == [
        "TARGET  KIND     STATUS  SCANNED  MATCHED  DELETED  FAILED  FREED    TIME",
        "big     volumes  ok      1204     1204     1204     0       3.1 MiB  0.0 s",
        "small   volumes  ok      3        3        3        0       10 B     0.0 s",
    ]
    assert not any("{" in line or "'" in line for line in lines)


def test_logs_helper_thread_exception_is_a_json_line(root: Path, tmp_path: Path) -> None:
    """An exception escaping a helper thread is an `internal_error` line, not stderr text."""
    code = (
        "import threading, sys; from cleanup import cli, logs\n"
        "real = cli.runner.run\n"
        "def run(*a, **k):\n"
        "    t = threading.Thread(target=lambda: 1 / 0); t.start(); t.join()\n"
        "    return real(*a, **k)\n"
        "cli.runner.run = run\n"
        "sys.exit(cli.main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "--days", "7"],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(__file__).parents[2]),
            "CLEANUP_VOLUMES": str(root),
        },
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    lines = assert_json_only(proc.stdout, proc.stderr)
    (error,) = [line for line in lines if line["event"] == "internal_error"]
    assert "ZeroDivisionError" in error["error"] and "Traceback" in error["traceback"]
    assert lines[-1]["event"] == "run_finished"
