"""The command line, exit codes and JSON log lines (docs/getting-started.md#usage, docs/events-and-exit-codes.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cleanup import __version__
from tests.support.cli import run_cli
from tests.volumes.conftest import NOW, make

COMMON = ("timestamp", "level", "logger", "message", "event", "run_id")
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
REPO = Path(__file__).parents[2]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    make(path, "old", 30)
    make(path, "fresh", 1)
    return path


def env_for(root: Path, **extra: str) -> dict[str, str]:
    return {"CLEANUP_VOLUMES": str(root), "CLEANUP_MAX_AGE": "7d", **extra}


def test_main_version_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    result = run_cli(["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout + capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["--max-age", "1d", "--days", "2"],
        ["--only", "volumes", "--jobs-only"],
        ["--temp-only", "--jobs-only"],
    ],
)
def test_main_usage_error_exits_2(root: Path, argv: list[str]) -> None:
    """Unknown flags and conflicting flags are usage errors: exit 2, nothing deleted."""
    result = run_cli(argv, env_for(root))
    assert result.exit_code == 2
    assert (root / "old").exists()


@pytest.mark.parametrize(
    ("argv", "env_extra", "named"),
    [
        (["--max-age", "0d"], {}, "--max-age = '0d'"),
        (["--days", "-3"], {}, "--days = '-3'"),
        (["--max-deletions", "many"], {}, "--max-deletions = 'many'"),
        (["--only", "tapes"], {}, "--only = 'tapes'"),
        (["--log-level", "LOUD"], {}, "--log-level = 'LOUD'"),
        ([], {"CLEANUP_DRY_RUN": "perhaps"}, "CLEANUP_DRY_RUN = 'perhaps'"),
    ],
)
def test_main_config_error_exits_2_and_deletes_nothing(
    root: Path, argv: list[str], env_extra: dict[str, str], named: str
) -> None:
    """A bad value exits 2 with a config_error line naming it, and nothing is deleted."""
    result = run_cli(argv, env_for(root, **env_extra))
    assert result.exit_code == 2
    assert (root / "old").exists()
    error = result.one("config_error")
    assert error["level"] == "ERROR"
    assert error["errors"][0].startswith(named + ": "), error["errors"]
    assert result.summary["exit_code"] == 2
    assert not result.events("run_started")


def test_main_config_error_printed_whatever_the_log_level(tmp_path: Path) -> None:
    """Configuration errors are printed even when --log-level ERROR would hide INFO lines."""
    missing = str(tmp_path / "nope.toml")
    result = run_cli(["--config", missing, "--log-level", "ERROR"])
    assert result.exit_code == 2
    assert any(missing in p for p in result.one("config_error")["errors"])


def test_main_ok_run_exits_0_with_summary(root: Path) -> None:
    """A clean run exits 0; run_finished is last and carries totals and per-target summaries."""
    result = run_cli([], env_for(root), now=NOW)
    assert result.exit_code == 0
    summary = result.summary
    assert (summary["status"], summary["exit_code"], summary["level"]) == ("ok", 0, "INFO")
    assert (summary["scanned"], summary["matched"], summary["deleted"]) == (2, 1, 1)
    assert summary["targets"] == [
        {
            "target": "data",
            "kind": "volumes",
            "status": "ok",
            "scanned": 2,
            "matched": 1,
            "deleted": 1,
            "failed": 0,
            "bytes_freed": 1,
            "duration_s": summary["targets"][0]["duration_s"],
        }
    ]
    assert isinstance(summary["duration_s"], float)
    started = result.one("run_started")
    assert started["targets"] == ["data"]
    assert started["version"] == __version__
    assert started["dry_run"] is False


def test_main_every_line_has_common_fields(root: Path) -> None:
    """Every JSON line has the common keys, one run_id, and an RFC 3339 UTC timestamp."""
    env = env_for(root, POD_NAME="cleanup-abc", POD_NAMESPACE="ops", JOB_NAME="cleanup-123")
    result = run_cli(["--log-level", "DEBUG"], env, now=NOW)
    assert len(result.lines) == len(result.stdout.splitlines()) >= 5
    assert len({line["run_id"] for line in result.lines}) == 1
    for line in result.lines:
        assert all(key in line for key in COMMON), line
        assert RFC3339_UTC.fullmatch(line["timestamp"]), line["timestamp"]
        assert (line["pod_name"], line["pod_namespace"], line["job_name"]) == (
            "cleanup-abc",
            "ops",
            "cleanup-123",
        )
        if line["event"] not in ("run_started", "run_finished"):
            assert (line["target"], line["kind"]) == ("data", "volumes")


def test_main_target_started_carries_cutoff(root: Path) -> None:
    """target_started carries the cutoff: the run's one clock reading minus max_age."""
    result = run_cli([], env_for(root), now=NOW)
    assert result.one("target_started")["cutoff"] == "2026-05-25T12:00:00.000Z"


def test_main_log_level_error_still_prints_run_finished(root: Path) -> None:
    """With --log-level ERROR only run_finished (always printed) appears for a clean run."""
    result = run_cli(["--log-level", "ERROR"], env_for(root), now=NOW)
    assert [line["event"] for line in result.lines] == ["run_finished"]


def test_main_item_events_only_at_debug(root: Path) -> None:
    """Per-item events are DEBUG: absent at INFO, present at DEBUG with the path."""
    assert not run_cli([], env_for(root), now=NOW).events("item_deleted")
    make(root, "old2", 30)
    debug = run_cli(["--log-level", "debug"], env_for(root), now=NOW)
    (item,) = debug.events("item_deleted")
    assert (item["level"], item["path"]) == ("DEBUG", f"{root}/old2")


def test_main_text_format_is_for_people(root: Path) -> None:
    """--log-format text prints one readable non-JSON line per event."""
    result = run_cli(["--log-format", "text"], env_for(root), now=NOW)
    lines = result.stdout.splitlines()
    assert result.exit_code == 0
    assert not result.lines
    assert any(" INFO    data: ok, 1 deleted, 1 B freed in 0.0 s" in line for line in lines)
    assert lines[-2:] == [
        "TARGET  KIND     STATUS  SCANNED  MATCHED  DELETED  FAILED  FREED  TIME",
        "data    volumes  ok      2        1        1        0       1 B    0.0 s",
    ]
    assert not any(mark in result.stdout for mark in ("'", "['", "{'", "=[", "=(")), "no reprs"


def test_main_only_skips_other_kinds_unlisted(tmp_path: Path, root: Path) -> None:
    """Targets left out by --only are neither run nor listed."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'max_age = "7d"\n[[volumes]]\nname = "v"\npath = "{root}"\n'
        '[[postgres]]\nname = "p"\ntable = "jobs"\n'
    )
    result = run_cli(["--config", str(cfg), "--temp-only"], {}, now=NOW)
    assert result.exit_code == 0
    assert [t["target"] for t in result.summary["targets"]] == ["v"]
    assert result.one("run_started")["targets"] == ["v"]


def test_main_failed_target_does_not_stop_the_next(tmp_path: Path, root: Path) -> None:
    """A target that fails is reported `failed`; the next target still runs; exit 1."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'max_age = "7d"\n[[volumes]]\nname = "bad"\npath = "{root}"\nrequire_mount = true\n'
        f'[[volumes]]\nname = "good"\npath = "{root}"\n'
    )
    result = run_cli(["--config", str(cfg)], {}, now=NOW)
    assert result.exit_code == 1
    assert result.target("bad")["status"] == "failed"
    assert result.target("bad")["level"] == "ERROR"
    assert result.target("good")["status"] == "ok"
    assert not (root / "old").exists()
    assert (result.summary["status"], result.summary["level"]) == ("failed", "ERROR")


def test_main_dry_run_env_deletes_nothing_exits_0(root: Path) -> None:
    """CLEANUP_DRY_RUN=true reports what would go, deletes nothing, exits 0."""
    result = run_cli([], env_for(root, CLEANUP_DRY_RUN="true"), now=NOW)
    assert result.exit_code == 0
    assert (root / "old").exists()
    assert (result.summary["matched"], result.summary["deleted"]) == (1, 0)
    assert result.summary["dry_run"] is True


@pytest.mark.parametrize(
    "command", [["-m", "cleanup"], ["-c", "from cleanup.cli import main_exit; main_exit()"]]
)
def test_entry_points_are_the_same_program(root: Path, command: list[str]) -> None:
    """`python -m cleanup` and the console script entry behave the same."""
    now = time.time()
    os.utime(root / "fresh", (now, now))
    os.utime(root / "old", (now - 30 * 86400, now - 30 * 86400))
    proc = subprocess.run(
        [sys.executable, *command, "--days", "7", "--dry-run"],
        env={"CLEANUP_VOLUMES": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["matched"] == 1


def test_volume_only_run_imports_neither_botocore_nor_psycopg(root: Path) -> None:
    """Start-up stays light: store libraries load only when a target of that kind runs."""
    code = (
        "import sys; from cleanup.cli import main; "
        f"rc = main(['--days', '7'], environ={{'CLEANUP_VOLUMES': {str(root)!r}}}); "
        "print('LOADED', 'botocore' in sys.modules, 'psycopg' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert proc.stdout.splitlines()[-1] == "LOADED False False"


def test_main_reader_gone_run_finishes_quietly(tmp_path: Path) -> None:
    """When the reader of stdout goes away (`| head`), the run still finishes, without tracebacks."""
    data = tmp_path / "many"
    old = time.time() - 30 * 86400
    data.mkdir()
    for i in range(2000):
        path = data / f"f{i}"
        path.write_bytes(b"")
        os.utime(path, (old, old))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cleanup", "--days", "7", "--log-level", "DEBUG"],
        env={"CLEANUP_VOLUMES": str(data), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    errors = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert errors == ""
    assert not list(data.iterdir()), "the run stopped when its reader went away"
