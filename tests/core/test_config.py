"""Configuration (docs/configuration.md): defaults < file < environment < command line, every problem at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleanup.config import CliOptions, load_settings
from cleanup.errors import ConfigError
from cleanup.targets.postgres.settings import PostgresSettings
from cleanup.targets.s3.settings import S3Settings
from cleanup.targets.volumes.settings import VolumeSettings
from tests.support.cli import run_cli


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def problems(cli: CliOptions, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(cli, env or {})
    return info.value.problems


@pytest.fixture
def vol(tmp_path: Path) -> str:
    root = tmp_path / "data"
    root.mkdir()
    return str(root)


def test_load_settings_full_file_gives_documented_defaults(tmp_path: Path, vol: str) -> None:
    """Keys left out take the documented defaults for every target kind."""
    path = write(
        tmp_path,
        f"""
max_age = "7d"
[[volumes]]
name = "temp"
path = "{vol}"
[[s3]]
name = "outputs"
bucket = "media"
prefix = "output"
[[postgres]]
name = "jobs"
table = "jobs"
""",
    )
    settings = load_settings(CliOptions(config=path), {})
    volume, s3, pg = settings.targets
    assert volume == VolumeSettings(name="temp", path=vol, max_age=604800)
    assert (volume.remove_empty_dirs, volume.exclude, volume.one_file_system) == (False, (), True)
    assert (volume.require_mount, volume.workers) == (False, 1)
    assert s3 == S3Settings(name="outputs", bucket="media", prefix="output/", max_age=604800)
    assert (s3.endpoint_url, s3.region, s3.versions, s3.allow_whole_bucket) == (
        "",
        "",
        "current",
        False,
    )
    assert pg == PostgresSettings(name="jobs", table="jobs", max_age=604800)
    assert (pg.schema, pg.timestamp_column, pg.status_column) == ("public", "created_at", "status")
    assert (pg.statuses, pg.batch_size) == (("completed", "failed", "cancelled"), 5000)
    assert pg.dsn_env == "CLEANUP_DATABASE_URL"
    assert (settings.dry_run, settings.max_deletions, settings.progress_interval) == (False, 0, 30)


def test_load_settings_target_max_age_beats_every_global(tmp_path: Path, vol: str) -> None:
    """A target's own max_age wins over file, environment and command-line defaults."""
    path = write(
        tmp_path, f'max_age = "7d"\n[[volumes]]\nname = "a"\npath = "{vol}"\nmax_age = "1d"\n'
    )
    env = {"CLEANUP_MAX_AGE": "3d"}
    settings = load_settings(CliOptions(config=path, max_age="2w"), env)
    assert settings.targets[0].max_age == 86400


@pytest.mark.parametrize(
    ("file_age", "env", "cli", "expected"),
    [
        ('"7d"', {}, CliOptions(), 7 * 86400),
        ('"7d"', {"CLEANUP_MAX_AGE": "3d"}, CliOptions(), 3 * 86400),
        ('"7d"', {"CLEANUP_DAYS": "4"}, CliOptions(), 4 * 86400),
        ('"7d"', {"CLEANUP_MAX_AGE": "3d"}, CliOptions(max_age="36h"), 36 * 3600),
        ('"7d"', {"CLEANUP_MAX_AGE": "3d"}, CliOptions(days="2"), 2 * 86400),
        ("5", {}, CliOptions(), 5 * 86400),
    ],
)
def test_load_settings_global_max_age_follows_precedence(
    tmp_path: Path, vol: str, file_age: str, env: dict[str, str], cli: CliOptions, expected: int
) -> None:
    """The global max age comes from file < environment < command line."""
    path = write(tmp_path, f'max_age = {file_age}\n[[volumes]]\nname = "a"\npath = "{vol}"\n')
    settings = load_settings(CliOptions(**{**cli.__dict__, "config": path}), env)
    assert settings.targets[0].max_age == expected


def test_load_settings_scalars_follow_precedence(tmp_path: Path, vol: str) -> None:
    """dry_run, max_deletions and progress_interval: file < environment < command line."""
    path = write(
        tmp_path,
        f'dry_run = false\nmax_deletions = 5\nprogress_interval = "1m"\n'
        f'[[volumes]]\nname = "a"\npath = "{vol}"\nmax_age = 1\n',
    )
    from_file = load_settings(CliOptions(config=path), {})
    assert (from_file.dry_run, from_file.max_deletions, from_file.progress_interval) == (
        False,
        5,
        60,
    )
    env = {
        "CLEANUP_DRY_RUN": "yes",
        "CLEANUP_MAX_DELETIONS": "7",
        "CLEANUP_PROGRESS_INTERVAL": "5s",
    }
    from_env = load_settings(CliOptions(config=path), env)
    assert (from_env.dry_run, from_env.max_deletions, from_env.progress_interval) == (True, 7, 5)
    from_cli = load_settings(CliOptions(config=path, max_deletions="9"), env)
    assert from_cli.max_deletions == 9


def test_load_settings_empty_env_value_counts_as_unset(tmp_path: Path, vol: str) -> None:
    """An environment variable set to the empty string does not override the file."""
    path = write(
        tmp_path, f'max_deletions = 5\n[[volumes]]\nname = "a"\npath = "{vol}"\nmax_age = 1\n'
    )
    env = {"CLEANUP_MAX_DELETIONS": "", "CLEANUP_DRY_RUN": "", "CLEANUP_MAX_AGE": ""}
    settings = load_settings(CliOptions(config=path), env)
    assert (settings.max_deletions, settings.dry_run) == (5, False)


def test_load_settings_config_env_names_the_file(tmp_path: Path, vol: str) -> None:
    """CLEANUP_CONFIG selects the config file when --config is not given."""
    path = write(tmp_path, f'[[volumes]]\nname = "a"\npath = "{vol}"\nmax_age = 1\n')
    assert load_settings(CliOptions(), {"CLEANUP_CONFIG": path}).config_file == path


def test_load_settings_many_problems_reports_all_at_once(tmp_path: Path) -> None:
    """Unknown keys, wrong types, bad durations, duplicates and unsafe roots come in one error."""
    path = write(
        tmp_path,
        """
max_age = "0d"
colour = "blue"
[[volumes]]
name = "a"
path = "/etc"
pth = "/x"
[[volumes]]
name = "a"
path = "relative/dir"
max_age = "3x"
remove_empty_dirs = "yes"
workers = 0
[[volumes]]
name = "c"
path = "/tmp"
workers = "2"
[[volumes]]
name = "d"
path = "/tmp"
workers = 33
[[s3]]
name = "s"
bucket = "b"
prefix = ""
versions = "some"
[[postgres]]
name = "p"
table = "jobs"
batch_size = 0
""",
    )
    found = "\n".join(problems(CliOptions(config=path)))
    for fragment in [
        "max_age = '0d'",
        "unknown key 'colour'",
        "unknown key 'pth'",
        "'/etc'",
        "duplicate target name 'a'",
        "must be an absolute path",
        "max_age = '3x'",
        "remove_empty_dirs = 'yes'",
        "workers = 0",
        "workers = '2'",
        "workers = 33",
        "prefix = ''",
        "versions = 'some'",
        "batch_size = 0",
        path,
    ]:
        assert fragment in found, fragment


@pytest.mark.parametrize(
    "root", ["/", "/etc", "/usr", "/var", "/var/", "/usr/../etc", "//", "/proc", "/lib64"]
)
def test_load_settings_system_root_is_refused(tmp_path: Path, root: str) -> None:
    """The filesystem root and the listed system directories are never swept."""
    path = write(tmp_path, f'[[volumes]]\nname = "a"\npath = "{root}"\nmax_age = 1\n')
    assert any("never swept" in p for p in problems(CliOptions(config=path)))


def test_load_settings_symlink_to_system_dir_is_refused(tmp_path: Path) -> None:
    """A root is resolved before the check, so a link pointing at /etc is refused."""
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    path = write(tmp_path, f'[[volumes]]\nname = "a"\npath = "{link}"\nmax_age = 1\n')
    assert any("'/etc'" in p for p in problems(CliOptions(config=path)))


def test_load_settings_subdirectory_of_system_dir_is_allowed(tmp_path: Path) -> None:
    """Subdirectories such as /var/log/app are allowed (checked offline, as --check-config does)."""
    path = write(tmp_path, '[[volumes]]\nname = "a"\npath = "/var/log/app"\nmax_age = 1\n')
    settings = load_settings(CliOptions(config=path, check_config=True), {})
    assert settings.targets[0].path == "/var/log/app"


def test_load_settings_root_resolved_from_symlink_and_dots(tmp_path: Path, vol: str) -> None:
    """Symlinks, `..` and a trailing slash are resolved, so the sweep sees the real directory."""
    link = tmp_path / "link"
    link.symlink_to(vol)
    path = write(tmp_path, f'[[volumes]]\nname = "a"\npath = "{link}/../link/"\nmax_age = 1\n')
    assert load_settings(CliOptions(config=path), {}).targets[0].path == vol


def test_load_settings_missing_root_is_not_a_config_error(tmp_path: Path) -> None:
    """A volume root that does not exist yet is valid configuration: the run decides."""
    path = write(tmp_path, f'[[volumes]]\nname = "a"\npath = "{tmp_path}/nope"\nmax_age = 1\n')
    settings = load_settings(CliOptions(config=path), {})
    assert [t.path for t in settings.targets] == [f"{tmp_path}/nope"]


def test_load_settings_missing_config_file_is_an_error(tmp_path: Path) -> None:
    """A --config file that does not exist is a configuration error naming it."""
    found = problems(CliOptions(config=str(tmp_path / "missing.toml"), max_age="1d"))
    assert any("missing.toml" in p and "does not exist" in p for p in found)


def test_load_settings_invalid_toml_is_an_error(tmp_path: Path) -> None:
    """A file that is not TOML is reported with its path."""
    path = write(tmp_path, "max_age = \n[[volumes")
    assert any("invalid TOML" in p and path in p for p in problems(CliOptions(config=path)))


def test_load_settings_no_targets_is_an_error() -> None:
    """A run with no targets at all is refused: nothing to do is a misconfiguration."""
    assert any("no targets" in p for p in problems(CliOptions(max_age="1d")))


def test_load_settings_target_without_max_age_is_an_error(tmp_path: Path, vol: str) -> None:
    """Retention is never implicit: a target with no max_age from anywhere is refused."""
    path = write(tmp_path, f'[[volumes]]\nname = "a"\npath = "{vol}"\n')
    assert any("no max_age" in p for p in problems(CliOptions(config=path)))


def test_load_settings_integer_duration_means_days(tmp_path: Path, vol: str) -> None:
    """A TOML integer where a duration is expected means days."""
    path = write(tmp_path, f'[[volumes]]\nname = "a"\npath = "{vol}"\nmax_age = 2\n')
    assert load_settings(CliOptions(config=path), {}).targets[0].max_age == 2 * 86400


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CLEANUP_DRY_RUN", "maybe"),
        ("CLEANUP_MAX_DELETIONS", "-1"),
        ("CLEANUP_MAX_DELETIONS", "ten"),
        ("CLEANUP_ONLY", "volumes,tape"),
        ("CLEANUP_LOG_LEVEL", "LOUD"),
        ("CLEANUP_LOG_FORMAT", "xml"),
        ("CLEANUP_PROGRESS_INTERVAL", "0s"),
        ("CLEANUP_MAX_AGE", "soon"),
        ("CLEANUP_DAYS", "7d"),
    ],
)
def test_load_settings_bad_env_value_names_key_and_value(vol: str, key: str, value: str) -> None:
    """A bad environment value is reported with the variable's name and the value."""
    env = {"CLEANUP_VOLUMES": vol, key: value}
    assert any(key in p and repr(value) in p for p in problems(CliOptions(max_age="1d"), env))


def test_load_settings_quick_targets_from_env(tmp_path: Path) -> None:
    """CLEANUP_VOLUMES, CLEANUP_S3_* and CLEANUP_PG_* each add targets with the documented names."""
    a, b = tmp_path / "temp", tmp_path / "output"
    a.mkdir()
    b.mkdir()
    env = {
        "CLEANUP_VOLUMES": f"{a},{b}/",
        "CLEANUP_MAX_AGE": "2d",
        "CLEANUP_S3_BUCKET": "media",
        "CLEANUP_S3_PREFIX": "out",
        "CLEANUP_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "CLEANUP_S3_REGION": "eu-west-1",
        "CLEANUP_PG_TABLE": "jobs",
        "CLEANUP_PG_STATUSES": "done, failed",
        "CLEANUP_DATABASE_URL": "postgresql://u:secret@db/app",
    }
    settings = load_settings(CliOptions(), env)
    names = [(t.kind, t.name) for t in settings.targets]
    assert names == [
        ("volumes", "temp"),
        ("volumes", "output"),
        ("s3", "s3"),
        ("postgres", "postgres"),
    ]
    s3 = settings.targets[2]
    assert isinstance(s3, S3Settings)
    assert (s3.bucket, s3.prefix, s3.endpoint_url, s3.region) == (
        "media",
        "out/",
        "http://127.0.0.1:9000",
        "eu-west-1",
    )
    pg = settings.targets[3]
    assert isinstance(pg, PostgresSettings)
    assert (pg.statuses, pg.dsn, pg.max_age) == (
        ("done", "failed"),
        "postgresql://u:secret@db/app",
        172800,
    )


def test_load_settings_quick_s3_without_prefix_is_refused() -> None:
    """The S3 quick target needs a prefix: the whole bucket is only allowed from the file."""
    env = {"CLEANUP_S3_BUCKET": "media", "CLEANUP_MAX_AGE": "1d"}
    assert any("prefix" in p for p in problems(CliOptions(), env))


def test_load_settings_quick_target_name_clash_is_an_error(tmp_path: Path, vol: str) -> None:
    """A quick target whose name equals a file target's name is a duplicate."""
    path = write(tmp_path, f'[[volumes]]\nname = "data"\npath = "{vol}"\nmax_age = 1\n')
    env = {"CLEANUP_VOLUMES": vol}
    assert any("duplicate target name 'data'" in p for p in problems(CliOptions(config=path), env))


def test_load_settings_only_selects_kinds(tmp_path: Path, vol: str) -> None:
    """--only keeps the other targets configured but not selected."""
    path = write(
        tmp_path,
        f'max_age = 1\n[[volumes]]\nname = "v"\npath = "{vol}"\n'
        '[[postgres]]\nname = "p"\ntable = "jobs"\n',
    )
    settings = load_settings(CliOptions(config=path, only="postgres"), {})
    assert [t.name for t in settings.selected] == ["p"]
    assert len(settings.targets) == 2


def test_load_settings_only_matching_nothing_is_an_error(tmp_path: Path, vol: str) -> None:
    """Selecting only kinds that have no target would silently do nothing, so it is refused."""
    env = {"CLEANUP_VOLUMES": vol, "CLEANUP_MAX_AGE": "1d"}
    assert any("selects none" in p for p in problems(CliOptions(only="s3"), env))


def test_load_settings_both_age_variables_is_ambiguous(vol: str) -> None:
    """CLEANUP_MAX_AGE and CLEANUP_DAYS together are refused rather than guessed between."""
    env = {"CLEANUP_VOLUMES": vol, "CLEANUP_MAX_AGE": "1d", "CLEANUP_DAYS": "3"}
    assert any("both set" in p for p in problems(CliOptions(), env))


def test_load_settings_downward_api_env_goes_to_log_context(vol: str) -> None:
    """POD_NAME, POD_NAMESPACE and JOB_NAME become log fields."""
    env = {
        "CLEANUP_VOLUMES": vol,
        "CLEANUP_MAX_AGE": "1d",
        "POD_NAME": "p-1",
        "POD_NAMESPACE": "ops",
        "JOB_NAME": "j",
    }
    context = load_settings(CliOptions(), env).log_context
    assert context == {"pod_name": "p-1", "pod_namespace": "ops", "job_name": "j"}


def test_check_config_prints_effective_config_and_redacts_secrets(tmp_path: Path, vol: str) -> None:
    """--check-config prints one JSON object with defaults filled in and no secret in it."""
    path = write(
        tmp_path,
        f"""
max_age = "7d"
[[volumes]]
name = "temp"
path = "{vol}"
[[s3]]
name = "o"
bucket = "media"
prefix = "output"
endpoint_url = "https://key:s3cr3t-endpoint@minio.local:9000"
[[postgres]]
name = "jobs"
table = "jobs"
""",
    )
    env = {"CLEANUP_DATABASE_URL": "postgresql://app:hunter2@db:5432/app", "CLEANUP_DRY_RUN": "1"}
    result = run_cli(["--config", path, "--check-config"], env)
    assert result.exit_code == 0, result.stderr
    assert "hunter2" not in result.stdout and "s3cr3t-endpoint" not in result.stdout
    config = json.loads(result.stdout)
    assert config["dry_run"] is True
    assert config["volumes"][0]["max_age"] == "1w"
    assert config["volumes"][0]["remove_empty_dirs"] is False
    assert config["s3"][0]["prefix"] == "output/"
    assert config["postgres"][0]["dsn"] == "<redacted>"
    assert config["targets"] == ["temp", "o", "jobs"]


def test_check_config_bad_config_exits_2_naming_the_problem(tmp_path: Path) -> None:
    """--check-config on a bad file exits 2 and names the key and value."""
    path = write(tmp_path, '[[volumes]]\nname = "a"\npath = "/data"\nmax_age = "forever"\n')
    result = run_cli(["--config", path, "--check-config"])
    assert result.exit_code == 2
    error = result.one("config_error")
    assert any("max_age = 'forever'" in p for p in error["errors"])
    assert result.stderr == ""


def test_load_settings_default_path_used_when_it_exists(
    tmp_path: Path, vol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --config or CLEANUP_CONFIG, the default path is read when it exists."""
    import cleanup.config

    path = write(tmp_path, f'[[volumes]]\nname = "a"\npath = "{vol}"\nmax_age = 1\n')
    monkeypatch.setattr(cleanup.config, "DEFAULT_CONFIG_PATH", path)
    assert load_settings(CliOptions(), {}).config_file == path
    monkeypatch.setattr(cleanup.config, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.toml"))
    assert any("no targets" in p for p in problems(CliOptions()))


def test_load_settings_env_only_and_log_options_apply(vol: str) -> None:
    """CLEANUP_ONLY, CLEANUP_LOG_LEVEL and CLEANUP_LOG_FORMAT are read; flags override them."""
    env = {
        "CLEANUP_VOLUMES": vol,
        "CLEANUP_MAX_AGE": "1d",
        "CLEANUP_ONLY": "volumes, s3",
        "CLEANUP_LOG_LEVEL": "warning",
        "CLEANUP_LOG_FORMAT": "TEXT",
    }
    settings = load_settings(CliOptions(), env)
    assert (settings.only, settings.log_level, settings.log_format) == (
        ("volumes", "s3"),
        "WARNING",
        "text",
    )
    flagged = load_settings(CliOptions(only="volumes", log_level="DEBUG", log_format="json"), env)
    assert (flagged.only, flagged.log_level, flagged.log_format) == (("volumes",), "DEBUG", "json")


def test_load_settings_jobs_only_alias_selects_postgres() -> None:
    """--jobs-only is --only postgres (the CLI passes the alias through as `only`)."""
    from cleanup.cli import build_parser

    args = build_parser().parse_args(["--jobs-only"])
    assert args.only == "postgres"
    assert build_parser().parse_args(["--temp-only"]).only == "volumes"
