"""Warnings for a valid configuration that is almost certainly not what was meant (docs/events-and-exit-codes.md#warnings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.volumes.conftest import NOW


def _config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(body)
    return str(path)


@pytest.mark.parametrize(
    ("argv", "env", "key"),
    [
        (["--days", "3"], {}, "--days"),
        (["--max-age", "3d"], {}, "--max-age"),
        ([], {"CLEANUP_MAX_AGE": "3d"}, "CLEANUP_MAX_AGE"),
        ([], {"CLEANUP_DAYS": "3"}, "CLEANUP_DAYS"),
    ],
)
def test_main_global_age_no_target_uses_is_warned(
    tmp_path: Path, argv: list[str], env: dict[str, str], key: str
) -> None:
    """--days 3 where every target sets its own max_age logs `max_age_unused` naming the key."""
    (tmp_path / "d").mkdir()
    config = _config(
        tmp_path, f'[[volumes]]\nname = "v"\npath = "{tmp_path / "d"}"\nmax_age = "1d"\n'
    )
    result = run_cli(["--config", config, *argv], env, now=NOW)
    assert result.exit_code == 0
    (warning,) = result.events("config_warning")
    assert (warning["code"], warning["key"], warning["level"]) == ("max_age_unused", key, "WARNING")


def test_main_global_age_used_by_a_target_is_not_warned(tmp_path: Path) -> None:
    """--days that at least one target falls back to is in use: no warning."""
    (tmp_path / "d").mkdir()
    body = (
        f'[[volumes]]\nname = "v"\npath = "{tmp_path / "d"}"\nmax_age = "1d"\n'
        f'[[volumes]]\nname = "w"\npath = "{tmp_path / "d"}"\n'
    )
    result = run_cli(["--config", _config(tmp_path, body), "--days", "3"], {}, now=NOW)
    assert result.exit_code == 0
    assert not result.events("config_warning")


@pytest.mark.parametrize(
    ("prefix", "code"),
    [("output/*", "s3_prefix_glob"), ("/output/", "s3_prefix_leading_slash")],
)
def test_check_config_suspicious_s3_prefix_is_warned(
    tmp_path: Path, prefix: str, code: str
) -> None:
    """A prefix with glob characters or a leading slash is valid but warned about."""
    body = f'[[s3]]\nname = "o"\nbucket = "media"\nprefix = "{prefix}"\nmax_age = "7d"\n'
    result = run_cli(["--config", _config(tmp_path, body), "--check-config"])
    assert result.exit_code == 0
    (printed,) = [line for line in result.stdout.splitlines() if line]
    assert [w["code"] for w in json.loads(printed)["warnings"]] == [code]


@pytest.mark.parametrize(
    ("bucket", "fix"),
    [
        ("s3://media", 'write bucket = "media"'),
        ("s3://media/output/", 'write bucket = "media" and prefix = "output/"'),
        ("media/output", 'write bucket = "media" and prefix = "output"'),
    ],
)
def test_check_config_bucket_given_as_url_is_an_error_with_the_fix(
    tmp_path: Path, bucket: str, fix: str
) -> None:
    """bucket = "s3://..." exits 2 with a message that says how to write it."""
    body = f'[[s3]]\nname = "o"\nbucket = "{bucket}"\nprefix = "x/"\nmax_age = "7d"\n'
    result = run_cli(["--config", _config(tmp_path, body), "--check-config"])
    assert result.exit_code == 2
    (error,) = result.one("config_error")["errors"]
    assert f"bucket = {bucket!r}" in error and fix in error
