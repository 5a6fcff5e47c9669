"""Settings: built-in defaults < TOML file < environment < command line.

The only module that reads the environment, and it takes the mapping as an
argument. Every problem is collected and raised at once as one ConfigError, so
an operator fixes a bad config in one round trip and nothing is ever deleted
under a half-valid configuration.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cleanup.durations import format_duration, parse_duration
from cleanup.errors import ConfigError
from cleanup.redact import REDACTED, redact

KINDS = ("volumes", "s3", "postgres")
DEFAULT_CONFIG_PATH = "/etc/cleanup/config.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("json", "text")
FORBIDDEN_ROOTS = frozenset(
    [
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib64",
        "/proc",
        "/root",
        "/sbin",
        "/sys",
        "/usr",
        "/var",
    ]
)
DOWNWARD_API = {"POD_NAME": "pod_name", "POD_NAMESPACE": "pod_namespace", "JOB_NAME": "job_name"}
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_VOLUME_WORKERS = 32
# libpq's own variables: with any of them set, an empty DSN still names a server.
LIBPQ_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class ConfigWarning:
    """A valid configuration that is almost certainly not what the operator meant."""

    code: str
    key: str
    message: str
    target: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class VolumeSettings:
    kind: ClassVar[str] = "volumes"
    name: str
    path: str
    max_age: int
    remove_empty_dirs: bool = False
    exclude: tuple[str, ...] = ()
    one_file_system: bool = True
    require_mount: bool = False
    workers: int = 1


@dataclass(frozen=True)
class S3Settings:
    kind: ClassVar[str] = "s3"
    name: str
    bucket: str
    prefix: str
    max_age: int
    endpoint_url: str = ""
    region: str = ""
    exclude: tuple[str, ...] = ()
    versions: str = "current"
    allow_whole_bucket: bool = False


@dataclass(frozen=True)
class PostgresSettings:
    kind: ClassVar[str] = "postgres"
    name: str
    table: str
    max_age: int
    schema: str = "public"
    timestamp_column: str = "created_at"
    status_column: str = "status"
    statuses: tuple[str, ...] = ("completed", "failed", "cancelled")
    batch_size: int = 5000
    dsn_env: str = "CLEANUP_DATABASE_URL"
    # The DSN is a secret: never in repr, logs or --check-config output.
    dsn: str = field(default="", repr=False)
    # Whether libpq's PG* variables are set, so that an empty DSN still reaches a server.
    libpq_env: bool = False


TargetSettings = VolumeSettings | S3Settings | PostgresSettings


@dataclass(frozen=True)
class Settings:
    targets: tuple[TargetSettings, ...]
    only: tuple[str, ...] = KINDS
    names: tuple[str, ...] | None = None  # --target: None runs every target of the kinds
    dry_run: bool = False
    max_deletions: int = 0
    progress_interval: int = 30
    max_age: int | None = None
    log_level: str = "INFO"
    log_format: str = "json"
    config_file: str | None = None
    log_context: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[ConfigWarning, ...] = ()

    @property
    def selected(self) -> tuple[TargetSettings, ...]:
        """The targets this run executes, in configuration order."""
        return tuple(
            t
            for t in self.targets
            if t.kind in self.only and (self.names is None or t.name in self.names)
        )


@dataclass(frozen=True)
class CliOptions:
    """Command-line values as typed, still unvalidated, so config reports every problem."""

    config: str | None = None
    max_age: str | None = None
    days: str | None = None
    dry_run: bool = False
    only: str | None = None
    targets: str | None = None
    max_deletions: str | None = None
    log_level: str | None = None
    log_format: str | None = None
    check_config: bool = False


class _Problems:
    """Every problem found (errors) and every warning, collected in one pass."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.warnings: list[ConfigWarning] = []
        # Targets that fell back to the global max_age (the others set their own).
        self.global_age_users: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def warn(self, warning: ConfigWarning) -> None:
        self.warnings.append(warning)


class _Table:
    """One TOML table: typed reads that record problems instead of raising."""

    def __init__(self, data: Mapping[str, Any], where: str, problems: _Problems) -> None:
        self.data = dict(data)
        self.where = where
        self.problems = problems
        self.seen: set[str] = set()

    def _bad(self, key: str, value: object, why: str) -> None:
        self.problems.add(f"{self.where}: {key} = {value!r}: {why}")

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def str_(self, key: str, default: str) -> str:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self._bad(key, value, "expected a string")
            return default
        return value

    def bool_(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self._bad(key, value, "expected true or false")
            return default
        return value

    def int_(self, key: str, default: int, minimum: int, maximum: int | None = None) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self._bad(key, value, "expected an integer")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            limit = f"between {minimum} and {maximum}" if maximum else f"at least {minimum}"
            self._bad(key, value, f"must be {limit}")
            return default
        return value

    def str_list(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._bad(key, value, "expected a list of strings")
            return default
        return tuple(value)

    def duration(self, key: str) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            self._bad(key, value, str(exc))
            return None

    def finish(self) -> None:
        for key in sorted(set(self.data) - self.seen):
            self.problems.add(f"{self.where}: unknown key {key!r}")


def _env(environ: Mapping[str, str], key: str) -> str | None:
    """An environment variable set to the empty string counts as unset."""
    value = environ.get(key)
    return value if value else None


def _duration_value(value: str | None, where: str, problems: _Problems) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        problems.add(f"{where} = {value!r}: {exc}")
        return None


def _bool_value(value: str | None, where: str, problems: _Problems) -> bool | None:
    if value is None:
        return None
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    problems.add(f"{where} = {value!r}: expected one of true/false/1/0/yes/no")
    return None


def _count_value(value: str | None, where: str, problems: _Problems) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        problems.add(f"{where} = {value!r}: expected a whole number >= 0")
        return None
    return int(value.strip())


def _choice(
    value: str | None, where: str, choices: Sequence[str], problems: _Problems
) -> str | None:
    if value is None:
        return None
    # Case-insensitive, answered in the canonical spelling (INFO, json).
    normalized = next((c for c in choices if c.lower() == value.strip().lower()), None)
    if normalized is None:
        problems.add(f"{where} = {value!r}: expected one of {', '.join(choices)}")
        return None
    return normalized


def _only_value(value: str | None, where: str, problems: _Problems) -> tuple[str, ...] | None:
    if value is None:
        return None
    kinds = [part.strip().lower() for part in value.split(",")]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        problems.add(f"{where} = {value!r}: unknown kind(s) {bad}; expected {', '.join(KINDS)}")
        return None
    return tuple(k for k in KINDS if k in kinds)


def _first_duration(
    pairs: Sequence[tuple[str, str | None]], problems: _Problems
) -> tuple[int | None, tuple[str, str] | None]:
    """Parse the one duration set among synonyms (--max-age/--days); two at once is ambiguous.

    Returns the value and which synonym gave it (key, text), or None when none is set.
    """
    given = [(where, value) for where, value in pairs if value is not None]
    if len(given) > 1:
        names = " and ".join(where for where, _ in given)
        problems.add(f"{names} are both set; set only one")
        return None, given[0]
    if not given:
        return None, None
    where, value = given[0]
    days = where.startswith("--days") or where == "CLEANUP_DAYS"
    if days and not value.strip().isdigit():
        problems.add(f"{where} = {value!r}: expected a whole number of days")
        return None, (where, value)
    return _duration_value(value, where, problems), (where, value)


def _config_path(cli: CliOptions, environ: Mapping[str, str], problems: _Problems) -> str | None:
    explicit = cli.config or _env(environ, "CLEANUP_CONFIG")
    if explicit is not None:
        where = "--config" if cli.config else "CLEANUP_CONFIG"
        if not os.path.isfile(explicit):
            problems.add(f"{where} = {explicit!r}: config file does not exist")
            return None
        return explicit
    return DEFAULT_CONFIG_PATH if os.path.isfile(DEFAULT_CONFIG_PATH) else None


def _read_toml(path: str, problems: _Problems) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        problems.add(f"{path}: invalid TOML: {exc}")
    except OSError as exc:
        problems.add(f"{path}: cannot read config file: {exc.strerror}")
    return {}


def _normalize_prefix(prefix: str) -> str:
    # A prefix names a folder, so `output` must never match `output-archive/`.
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _check_root(path: str, where: str, problems: _Problems) -> str:
    if not os.path.isabs(path):
        problems.add(f"{where}: path = {path!r}: must be an absolute path")
        return path
    resolved = os.path.realpath(path)
    # Check the spelled path too: on merged-/usr systems /bin resolves to /usr/bin.
    literal = "/" + os.path.normpath(path).lstrip("/")
    for candidate in (literal, resolved):
        if candidate in FORBIDDEN_ROOTS:
            problems.add(
                f"{where}: path = {path!r}: resolves to {candidate!r}, which is never swept"
            )
            break
    return resolved


def _target_age(table: _Table, name: str, global_age: int | None, problems: _Problems) -> int:
    own = table.duration("max_age")
    if own is None and "max_age" not in table.data:
        problems.global_age_users.append(name)
    return own or global_age or 0


def _volume(table: _Table, global_age: int | None, problems: _Problems) -> VolumeSettings:
    name = table.str_("name", "")
    path = table.str_("path", "")
    if not path:
        problems.add(f"{table.where}: path is required")
    return VolumeSettings(
        name=name,
        path=_check_root(path, table.where, problems) if path else path,
        max_age=_target_age(table, name, global_age, problems),
        remove_empty_dirs=table.bool_("remove_empty_dirs", False),
        exclude=table.str_list("exclude", ()),
        one_file_system=table.bool_("one_file_system", True),
        require_mount=table.bool_("require_mount", False),
        workers=table.int_("workers", 1, 1, MAX_VOLUME_WORKERS),
    )


def _bucket(table: _Table, problems: _Problems) -> str:
    bucket = table.str_("bucket", "")
    if not bucket:
        problems.add(f"{table.where}: bucket is required")
        return bucket
    # A URL or a path where a bucket name goes: S3 would only answer "invalid bucket name".
    rest = bucket.split("://", 1)[1] if "://" in bucket else bucket
    if "://" in bucket or "/" in bucket:
        name, _, key_prefix = rest.partition("/")
        fix = f'bucket = "{name}"' + (f' and prefix = "{key_prefix}"' if key_prefix else "")
        problems.add(
            f"{table.where}: bucket = {bucket!r}: a bucket name, not a URL or path: write {fix}"
        )
    return bucket


def _prefix_warnings(table: _Table, name: str, prefix: str, problems: _Problems) -> None:
    if _GLOB_CHARS & set(prefix):
        problems.warn(
            ConfigWarning(
                "s3_prefix_glob",
                "prefix",
                f"{table.where}: prefix = {prefix!r} has glob characters, but an S3 prefix is "
                "literal: it matches only keys that start with those very characters; "
                "name the folder in prefix and put patterns in exclude",
                name,
                "s3",
            )
        )
    if prefix.startswith("/"):
        problems.warn(
            ConfigWarning(
                "s3_prefix_leading_slash",
                "prefix",
                f"{table.where}: prefix = {prefix!r} starts with '/', so it matches only keys "
                f"that start with '/' (S3 keys rarely do): did you mean {prefix.lstrip('/')!r}?",
                name,
                "s3",
            )
        )


def _s3(table: _Table, global_age: int | None, problems: _Problems) -> S3Settings:
    bucket = _bucket(table, problems)
    name = table.str_("name", "")
    prefix = table.str_("prefix", "")
    _prefix_warnings(table, name, prefix, problems)
    allow_whole = table.bool_("allow_whole_bucket", False)
    if not prefix.strip("/") and not allow_whole:
        problems.add(
            f"{table.where}: prefix = {prefix!r}: must name a folder; "
            "set allow_whole_bucket = true to sweep the whole bucket"
        )
    versions = table.str_("versions", "current")
    if versions not in ("current", "all"):
        problems.add(f"{table.where}: versions = {versions!r}: expected 'current' or 'all'")
    endpoint = table.str_("endpoint_url", "")
    if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
        problems.add(f"{table.where}: endpoint_url = {redact(endpoint)!r}: expected an http(s) URL")
    return S3Settings(
        name=name,
        bucket=bucket,
        prefix=_normalize_prefix(prefix) if prefix.strip("/") else "",
        max_age=_target_age(table, name, global_age, problems),
        endpoint_url=endpoint,
        region=table.str_("region", ""),
        exclude=table.str_list("exclude", ()),
        versions=versions,
        allow_whole_bucket=allow_whole,
    )


def _postgres(
    table: _Table, global_age: int | None, environ: Mapping[str, str], problems: _Problems
) -> PostgresSettings:
    name = table.str_("name", "")
    pg_table = table.str_("table", "")
    if not pg_table:
        problems.add(f"{table.where}: table is required")
    schema = table.str_("schema", "public")
    ts_column = table.str_("timestamp_column", "created_at")
    for key, value in (("schema", schema), ("timestamp_column", ts_column)):
        if not value:
            problems.add(f"{table.where}: {key} must not be empty")
    status_column = table.str_("status_column", "status")
    statuses = table.str_list("statuses", ("completed", "failed", "cancelled"))
    if status_column and not statuses:
        problems.add(f"{table.where}: statuses = []: must list at least one finished status")
    dsn_env = table.str_("dsn_env", "CLEANUP_DATABASE_URL")
    if not _ENV_NAME.fullmatch(dsn_env):
        # The value may be the DSN itself, put here by mistake: the log layer redacts it.
        problems.add(f"{table.where}: dsn_env = {dsn_env!r}: not an environment variable name")
    return PostgresSettings(
        name=name,
        table=pg_table,
        schema=schema,
        timestamp_column=ts_column,
        status_column=status_column,
        statuses=statuses,
        batch_size=table.int_("batch_size", 5000, 1, 100_000),
        max_age=_target_age(table, name, global_age, problems),
        dsn_env=dsn_env,
        dsn=(_env(environ, dsn_env) or "") if _ENV_NAME.fullmatch(dsn_env) else "",
        libpq_env=any(_env(environ, key) for key in LIBPQ_ENV),
    )


def _file_targets(
    data: Mapping[str, Any],
    path: str,
    global_age: int | None,
    environ: Mapping[str, str],
    problems: _Problems,
) -> list[TargetSettings]:
    targets: list[TargetSettings] = []
    for kind in KINDS:
        entries = data.get(kind, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            problems.add(f"{path}: {kind} must be an array of tables ([[{kind}]])")
            continue
        for index, entry in enumerate(entries):
            label = f"{kind}[{index}]"
            if isinstance(entry.get("name"), str):
                label += f" ({entry['name']!r})"
            table = _Table(entry, f"{path}: {label}", problems)
            if kind == "volumes":
                targets.append(_volume(table, global_age, problems))
            elif kind == "s3":
                targets.append(_s3(table, global_age, problems))
            else:
                targets.append(_postgres(table, global_age, environ, problems))
            table.finish()
    return targets


def _quick_targets(
    environ: Mapping[str, str], global_age: int | None, problems: _Problems
) -> list[TargetSettings]:
    targets: list[TargetSettings] = []
    volumes = _env(environ, "CLEANUP_VOLUMES")
    for raw in (volumes or "").split(","):
        path = raw.strip()
        if not path:
            continue
        name = os.path.basename(path.rstrip("/")) or path
        table = _Table({"name": name, "path": path}, f"CLEANUP_VOLUMES ({path!r})", problems)
        targets.append(_volume(table, global_age, problems))
    s3_keys = (
        "CLEANUP_S3_BUCKET",
        "CLEANUP_S3_PREFIX",
        "CLEANUP_S3_ENDPOINT_URL",
        "CLEANUP_S3_REGION",
    )
    s3_env = {key: _env(environ, key) for key in s3_keys}
    if any(s3_env.values()):
        entry = {
            "name": "s3",
            "bucket": s3_env["CLEANUP_S3_BUCKET"] or "",
            "prefix": s3_env["CLEANUP_S3_PREFIX"] or "",
            "endpoint_url": s3_env["CLEANUP_S3_ENDPOINT_URL"] or "",
            "region": s3_env["CLEANUP_S3_REGION"] or "",
        }
        targets.append(_s3(_Table(entry, "CLEANUP_S3_*", problems), global_age, problems))
    pg_keys = ("CLEANUP_PG_TIMESTAMP_COLUMN", "CLEANUP_PG_STATUS_COLUMN", "CLEANUP_PG_STATUSES")
    pg_table = _env(environ, "CLEANUP_PG_TABLE")
    if pg_table is not None:
        pg_entry: dict[str, Any] = {"name": "postgres", "table": pg_table}
        if (ts := _env(environ, pg_keys[0])) is not None:
            pg_entry["timestamp_column"] = ts
        # Set-but-empty would mean "no status filter"; the spec counts empty as unset.
        if (status := _env(environ, pg_keys[1])) is not None:
            pg_entry["status_column"] = status
        if (statuses := _env(environ, pg_keys[2])) is not None:
            pg_entry["statuses"] = [s.strip() for s in statuses.split(",") if s.strip()]
        table = _Table(pg_entry, "CLEANUP_PG_*", problems)
        targets.append(_postgres(table, global_age, environ, problems))
    elif any(_env(environ, key) for key in pg_keys):
        problems.add("CLEANUP_PG_*: CLEANUP_PG_TABLE is required for the postgres quick target")
    return targets


def _names_value(value: str | None, problems: _Problems) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not names:
        problems.add(f"--target = {value!r}: expected a comma list of target names")
        return None
    return names


def _check_targets(
    targets: Sequence[TargetSettings],
    only: Sequence[str],
    names: Sequence[str] | None,
    problems: _Problems,
) -> None:
    seen: set[str] = set()
    for target in targets:
        if not target.name:
            problems.add(f"{target.kind} target: name is required")
        elif target.name in seen:
            problems.add(f"duplicate target name {target.name!r}: names must be unique")
        seen.add(target.name)
        if target.max_age <= 0:
            problems.add(
                f"{target.kind} {target.name!r}: no max_age: set max_age on the target, "
                "or a global max_age / CLEANUP_MAX_AGE / --max-age / --days"
            )
    if not targets:
        problems.add(
            "no targets configured: add [[volumes]], [[s3]] or [[postgres]] to the "
            "config file, or set CLEANUP_VOLUMES / CLEANUP_S3_BUCKET / CLEANUP_PG_TABLE"
        )
        return
    if names is not None:
        unknown = [n for n in names if n not in seen]
        if unknown:
            problems.add(
                f"--target = {','.join(names)!r}: unknown target name(s) {unknown}; "
                f"configured: {', '.join(t.name for t in targets)}"
            )
            return
        for target in targets:
            if target.name in names and target.kind not in only:
                problems.warn(
                    ConfigWarning(
                        "target_not_selected",
                        "--target",
                        f"--target names {target.name!r}, but it is a {target.kind} target "
                        f"and --only / CLEANUP_ONLY selects {','.join(only)}: it does not run",
                        target.name,
                        target.kind,
                    )
                )
    if not any(t.kind in only and (names is None or t.name in names) for t in targets):
        chosen = f"--only {','.join(only)}" + (f" with --target {','.join(names)}" if names else "")
        problems.add(f"{chosen} selects none of the configured targets")


def _unused_age_warning(
    where: str | None, value: str | None, users: Sequence[str], problems: _Problems
) -> None:
    """--days 3 where every target sets its own max_age: the operator's 3 days never apply."""
    if where is None or users:
        return
    problems.warn(
        ConfigWarning(
            "max_age_unused",
            where,
            f"{where} = {value!r} is not used: every target sets its own max_age, "
            "which wins over the global default",
        )
    )


def load_settings(cli: CliOptions, environ: Mapping[str, str]) -> Settings:
    """Build the run's settings, or raise ConfigError listing every problem."""
    problems = _Problems()
    config_file = _config_path(cli, environ, problems)
    data = _read_toml(config_file, problems) if config_file else {}
    top = _Table(data, config_file or "config", problems)
    for kind in KINDS:
        top.raw(kind)

    file_age = top.duration("max_age")
    env_age, env_source = _first_duration(
        [
            ("CLEANUP_MAX_AGE", _env(environ, "CLEANUP_MAX_AGE")),
            ("CLEANUP_DAYS", _env(environ, "CLEANUP_DAYS")),
        ],
        problems,
    )
    cli_age, cli_source = _first_duration(
        [("--max-age", cli.max_age), ("--days", cli.days)], problems
    )
    global_age = cli_age if cli_source else env_age if env_source else file_age
    age_source = cli_source or env_source

    dry_run = top.bool_("dry_run", False)
    env_dry = _bool_value(_env(environ, "CLEANUP_DRY_RUN"), "CLEANUP_DRY_RUN", problems)
    dry_run = True if cli.dry_run else env_dry if env_dry is not None else dry_run

    max_deletions = top.int_("max_deletions", 0, 0)
    for where, value in (
        ("CLEANUP_MAX_DELETIONS", _env(environ, "CLEANUP_MAX_DELETIONS")),
        ("--max-deletions", cli.max_deletions),
    ):
        parsed = _count_value(value, where, problems)
        max_deletions = parsed if parsed is not None else max_deletions

    interval = top.duration("progress_interval") or 30
    env_interval = _env(environ, "CLEANUP_PROGRESS_INTERVAL")
    interval = _duration_value(env_interval, "CLEANUP_PROGRESS_INTERVAL", problems) or interval

    only: tuple[str, ...] = KINDS
    for where, value in (("CLEANUP_ONLY", _env(environ, "CLEANUP_ONLY")), ("--only", cli.only)):
        only = _only_value(value, where, problems) or only
    names = _names_value(cli.targets, problems)

    log_level = "INFO"
    log_format = "json"
    for source, level, fmt in (
        ("CLEANUP_", _env(environ, "CLEANUP_LOG_LEVEL"), _env(environ, "CLEANUP_LOG_FORMAT")),
        ("--", cli.log_level, cli.log_format),
    ):
        level_key = "CLEANUP_LOG_LEVEL" if source == "CLEANUP_" else "--log-level"
        format_key = "CLEANUP_LOG_FORMAT" if source == "CLEANUP_" else "--log-format"
        log_level = _choice(level, level_key, LOG_LEVELS, problems) or log_level
        log_format = _choice(fmt, format_key, LOG_FORMATS, problems) or log_format

    targets = _file_targets(data, config_file or "config", global_age, environ, problems)
    targets += _quick_targets(environ, global_age, problems)
    top.finish()
    _check_targets(targets, only, names, problems)
    selected = {t.name for t in targets if t.kind in only and (names is None or t.name in names)}
    _unused_age_warning(
        age_source[0] if age_source else None,
        age_source[1] if age_source else None,
        [n for n in problems.global_age_users if n in selected],
        problems,
    )
    if problems.items:
        raise ConfigError(problems.items)
    return Settings(
        targets=tuple(targets),
        only=only,
        names=names,
        dry_run=dry_run,
        max_deletions=max_deletions,
        progress_interval=interval,
        max_age=global_age,
        log_level=log_level,
        log_format=log_format,
        config_file=config_file,
        log_context=downward_context(environ),
        warnings=tuple(problems.warnings),
    )


def early_log_options(cli: CliOptions, environ: Mapping[str, str]) -> tuple[str, str]:
    """Best-effort log level and format, so a config error is printed in the asked-for format."""
    ignored = _Problems()
    fmt = _choice(cli.log_format, "", LOG_FORMATS, ignored) or _choice(
        _env(environ, "CLEANUP_LOG_FORMAT"), "", LOG_FORMATS, ignored
    )
    level = _choice(cli.log_level, "", LOG_LEVELS, ignored) or _choice(
        _env(environ, "CLEANUP_LOG_LEVEL"), "", LOG_LEVELS, ignored
    )
    return level or "INFO", fmt or "json"


def downward_context(environ: Mapping[str, str]) -> dict[str, str]:
    """The Kubernetes downward-API fields added to every log line."""
    return {name: value for key, name in DOWNWARD_API.items() if (value := _env(environ, key))}


def target_summary(target: TargetSettings) -> dict[str, Any]:
    """One target's effective settings, with secrets redacted."""
    out: dict[str, Any] = {"name": target.name, "kind": target.kind}
    if isinstance(target, VolumeSettings):
        out |= {
            "path": target.path,
            "max_age": format_duration(target.max_age),
            "remove_empty_dirs": target.remove_empty_dirs,
            "exclude": list(target.exclude),
            "one_file_system": target.one_file_system,
            "require_mount": target.require_mount,
            "workers": target.workers,
        }
    elif isinstance(target, S3Settings):
        out |= {
            "bucket": target.bucket,
            "prefix": target.prefix,
            "max_age": format_duration(target.max_age),
            "endpoint_url": redact(target.endpoint_url),
            "region": target.region,
            "exclude": list(target.exclude),
            "versions": target.versions,
            "allow_whole_bucket": target.allow_whole_bucket,
        }
    else:
        out |= {
            "table": target.table,
            "schema": target.schema,
            "timestamp_column": target.timestamp_column,
            "status_column": target.status_column,
            "statuses": list(target.statuses),
            "batch_size": target.batch_size,
            "max_age": format_duration(target.max_age),
            "dsn_env": target.dsn_env,
            "dsn": REDACTED if target.dsn else None,
        }
    out["max_age_seconds"] = target.max_age
    return out


def effective_config(settings: Settings) -> dict[str, Any]:
    """The whole effective configuration as printed by --check-config."""
    grouped: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for target in settings.targets:
        grouped[target.kind].append(target_summary(target))
    return {
        "config_file": settings.config_file,
        "max_age": format_duration(settings.max_age) if settings.max_age else None,
        "dry_run": settings.dry_run,
        "max_deletions": settings.max_deletions,
        "progress_interval": format_duration(settings.progress_interval),
        "only": list(settings.only),
        "target_names": list(settings.names) if settings.names is not None else None,
        "log_level": settings.log_level,
        "log_format": settings.log_format,
        "targets": [t.name for t in settings.selected],
        **grouped,
        "warnings": [warning_fields(w) for w in settings.warnings],
    }


def warning_fields(warning: ConfigWarning) -> dict[str, Any]:
    """A config warning as the fields of its `config_warning` event."""
    fields: dict[str, Any] = {"code": warning.code, "key": warning.key}
    if warning.target is not None:
        fields |= {"target": warning.target, "kind": warning.kind}
    return fields | {"warning": warning.message}
