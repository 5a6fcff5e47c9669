"""`--target NAMES` with and without `--only` (docs/getting-started.md#usage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.volumes.conftest import NOW, make


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Three targets: volumes `a` and `b` (each with one old file) and postgres `jobs`."""
    lines = ['max_age = "7d"']
    for name in ("a", "b"):
        make(tmp_path / name, "old", 30)
        lines += ["[[volumes]]", f'name = "{name}"', f'path = "{tmp_path / name}"']
    lines += ["[[postgres]]", 'name = "jobs"', 'table = "jobs"']
    path = tmp_path / "c.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_main_target_runs_only_the_named_targets(config: Path) -> None:
    """--target a runs `a` alone: `b` and `jobs` are neither run nor listed."""
    result = run_cli(["--config", str(config), "--target", "a"], {}, now=NOW)
    assert result.exit_code == 0
    assert [t["target"] for t in result.summary["targets"]] == ["a"]
    assert not (config.parent / "a" / "old").exists()
    assert (config.parent / "b" / "old").exists()


def test_main_target_and_only_must_both_select(config: Path) -> None:
    """With --only, a target runs when both select it; a named one --only leaves out is warned."""
    argv = ["--config", str(config), "--only", "volumes", "--target", "b,jobs"]
    result = run_cli(argv, {}, now=NOW)
    assert [t["target"] for t in result.summary["targets"]] == ["b"]
    (warning,) = result.events("config_warning")
    assert (warning["code"], warning["target"]) == ("target_not_selected", "jobs")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--target", "a,nope"], "unknown target name(s) ['nope']"),
        (["--only", "s3", "--target", "a"], "selects none of the configured targets"),
        (["--target", ","], "expected a comma list of target names"),
    ],
)
def test_main_target_bad_selection_is_a_config_error(
    config: Path, argv: list[str], expected: str
) -> None:
    """An unknown name, or a selection that leaves nothing, exits 2 and deletes nothing."""
    result = run_cli(["--config", str(config), *argv], {}, now=NOW)
    assert result.exit_code == 2
    (error,) = result.one("config_error")["errors"]
    assert expected in error
    assert (config.parent / "a" / "old").exists()
