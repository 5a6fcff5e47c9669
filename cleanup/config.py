"""Settings: built-in defaults < TOML file < environment < command line.

The only module that reads the environment, and it takes the mapping as an
argument. What each key is (type, default, range, environment variable) is
declared once, on the settings classes (cleanup.schema): here, on `Settings`
for the run-level keys and in each target kind's `settings` module for its own.
Every problem is collected and raised at once as one ConfigError, so an
operator fixes a bad config in one round trip and nothing is ever deleted under
a half-valid configuration.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cleanup import schema
from cleanup.durations import format_duration
from cleanup.errors import ConfigError
from cleanup.redact import redact
from cleanup.schema import ConfigWarning, Problems
from cleanup.targets import KINDS, TargetSettings, kind_of

DEFAULT_CONFIG_PATH = "/etc/cleanup/config.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("json", "text")
DOWNWARD_API = {"POD_NAME": "pod_name", "POD_NAMESPACE": "pod_namespace", "JOB_NAME": "job_name"}


@dataclass(frozen=True)
class Settings:
    """One run's settings. The declared keys are the run-level ones (file, env, flags)."""

    targets: tuple[TargetSettings, ...]
    max_age: int | None = schema.duration(
        "Global default max age for targets without their own; none: each target sets one.",
        default=None,
        env="CLEANUP_MAX_AGE",
    )
    dry_run: bool = schema.boolean(
        "Delete nothing; report what a real run would delete.", False, env="CLEANUP_DRY_RUN"
    )
    max_deletions: int = schema.integer(
        "Per-target safety cap (0 = no cap): a target that reaches it stops, ends `capped`, "
        "and the run exits 3.",
        0,
        minimum=0,
        env="CLEANUP_MAX_DELETIONS",
    )
    progress_interval: int = schema.duration(
        "How often a long target logs a `progress` event.", 30, env="CLEANUP_PROGRESS_INTERVAL"
    )
    only: tuple[str, ...] = schema.strings(
        "Kinds to run (comma list of volumes, s3, postgres).",
        KINDS,
        env="CLEANUP_ONLY",
        choices=KINDS,
        in_file=False,
    )
    log_level: str = schema.choice(
        "Lowest level printed.", LOG_LEVELS, "INFO", env="CLEANUP_LOG_LEVEL", in_file=False
    )
    log_format: str = schema.choice(
        "json for machines, text for a person.",
        LOG_FORMATS,
        "json",
        env="CLEANUP_LOG_FORMAT",
        in_file=False,
    )
    names: tuple[str, ...] | None = None  # --target: None runs every target of the kinds
    config_file: str | None = None
    log_context: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[ConfigWarning, ...] = ()

    @property
    def selected(self) -> tuple[TargetSettings, ...]:
        """The targets this run executes, in configuration order."""
        return tuple(t for t in self.targets if _chosen(t, self.only, self.names))


def _chosen(target: TargetSettings, only: Sequence[str], names: Sequence[str] | None) -> bool:
    return target.kind in only and (names is None or target.name in names)


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


@dataclass(frozen=True)
class _Source:
    """Where a run-level value can be typed: an environment variable or a flag."""

    label: str  # as the operator writes it: CLEANUP_DAYS, --days
    option: str | None = None  # the CliOptions attribute; None: an environment variable
    days: bool = False  # a whole number of days (the original app.cleanup's --days)

    def text(self, cli: CliOptions, environ: Mapping[str, str]) -> str | None:
        if self.option is None:
            return environ.get(self.label) or None  # set-but-empty counts as unset
        value = getattr(cli, self.option)
        if isinstance(value, bool):
            return "true" if value else None
        return value if isinstance(value, str) else None


# Beyond each key's own environment variable (declared on Settings): its synonyms and flags,
# one tuple per precedence layer. tests/core/test_config.py holds the flags equal to the CLI's.
_ALIASES: dict[str, tuple[_Source, ...]] = {"max_age": (_Source("CLEANUP_DAYS", days=True),)}
FLAGS: dict[str, tuple[_Source, ...]] = {
    "max_age": (_Source("--max-age", "max_age"), _Source("--days", "days", days=True)),
    "dry_run": (_Source("--dry-run", "dry_run"),),
    "max_deletions": (_Source("--max-deletions", "max_deletions"),),
    "only": (_Source("--only", "only"),),
    "log_level": (_Source("--log-level", "log_level"),),
    "log_format": (_Source("--log-format", "log_format"),),
}


def _layered(
    name: str,
    key: schema.Key,
    file_value: Any,
    cli: CliOptions,
    environ: Mapping[str, str],
    problems: Problems,
) -> tuple[Any, str | None]:
    """The value of one run-level key after every layer, and the label that gave it
    (None: the file or the default)."""
    value, given_by = file_value, None
    env = ((_Source(key.env),) if key.env else ()) + _ALIASES.get(name, ())
    for layer in (env, FLAGS.get(name, ())):
        given = [(source, text) for source in layer if (text := source.text(cli, environ))]
        if len(given) > 1:
            problems.add(" and ".join(s.label for s, _ in given) + " are both set; set only one")
            continue
        for source, text in given:
            if source.days and not text.strip().isdigit():
                problems.add(f"{source.label} = {text!r}: expected a whole number of days")
                continue
            parsed, why = schema.parse_text(key, text + "d" if source.days else text)
            if why is not None:
                problems.add(f"{source.label} = {text!r}: {why}")
                continue
            value, given_by = parsed, source.label
    return value, given_by


def _config_path(cli: CliOptions, environ: Mapping[str, str], problems: Problems) -> str | None:
    explicit = cli.config or environ.get("CLEANUP_CONFIG") or None
    if explicit is not None:
        where = "--config" if cli.config else "CLEANUP_CONFIG"
        if not os.path.isfile(explicit):
            problems.add(f"{where} = {explicit!r}: config file does not exist")
            return None
        return explicit
    return DEFAULT_CONFIG_PATH if os.path.isfile(DEFAULT_CONFIG_PATH) else None


def _read_toml(path: str, problems: Problems) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        problems.add(f"{path}: invalid TOML: {exc}")
    except OSError as exc:
        problems.add(f"{path}: cannot read config file: {exc.strerror}")
    return {}


def _entries(
    data: Mapping[str, Any], path: str, environ: Mapping[str, str], problems: Problems
) -> list[tuple[str, str, dict[str, Any]]]:
    """Every target entry, as (kind, where, table): the file's, then the quick targets'."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    for kind in KINDS:
        entries = data.get(kind, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            problems.add(f"{path}: {kind} must be an array of tables ([[{kind}]])")
            continue
        for index, entry in enumerate(entries):
            label = f"{kind}[{index}]"
            if isinstance(entry.get("name"), str):
                label += f" ({entry['name']!r})"
            found.append((kind, f"{path}: {label}", entry))
    for kind in KINDS:
        found += [(kind, where, entry) for where, entry in kind_of(kind).quick(environ)]
    return found


def _target(
    kind: str,
    where: str,
    entry: dict[str, Any],
    global_age: int | None,
    environ: Mapping[str, str],
    problems: Problems,
    age_users: list[str],
) -> TargetSettings:
    spec = kind_of(kind)
    values = schema.read_table(spec.settings, entry, where, problems)
    spec.check(values, where, problems)
    values |= spec.from_environment(values, environ)
    if values.get("max_age") is None and "max_age" not in entry:
        age_users.append(values.get("name") or "")
    values["max_age"] = values.get("max_age") or global_age or 0
    values["name"] = values.get("name") or ""
    for name, key in schema.keys(spec.settings):
        if values.get(name) is None and key.required:
            values[name] = ""
    settings: TargetSettings = spec.settings(**values)
    return settings


def _names(value: str | None, problems: Problems) -> tuple[str, ...] | None:
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
    problems: Problems,
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
    if not any(_chosen(t, only, names) for t in targets):
        chosen = f"--only {','.join(only)}" + (f" with --target {','.join(names)}" if names else "")
        problems.add(f"{chosen} selects none of the configured targets")


def log_options(cli: CliOptions, environ: Mapping[str, str]) -> tuple[str, str]:
    """The log level and format, leniently: what a configuration error is printed with."""
    ignored = Problems()
    declared = dict(schema.keys(Settings))
    level, _ = _layered("log_level", declared["log_level"], "INFO", cli, environ, ignored)
    fmt, _ = _layered("log_format", declared["log_format"], "json", cli, environ, ignored)
    return str(level), str(fmt)


def load_settings(cli: CliOptions, environ: Mapping[str, str]) -> Settings:
    """Build the run's settings, or raise ConfigError listing every problem."""
    problems = Problems()
    config_file = _config_path(cli, environ, problems)
    data = _read_toml(config_file, problems) if config_file else {}
    where = config_file or "config"
    run = schema.read_table(
        Settings, {k: v for k, v in data.items() if k not in KINDS}, where, problems
    )
    sources: dict[str, str | None] = {}
    for name, key in schema.keys(Settings):
        run[name], sources[name] = _layered(
            name, key, run.get(name, key.default), cli, environ, problems
        )
    names = _names(cli.targets, problems)
    age_users: list[str] = []
    targets = [
        _target(kind, at, entry, run["max_age"], environ, problems, age_users)
        for kind, at, entry in _entries(data, where, environ, problems)
    ]
    _check_targets(targets, run["only"], names, problems)
    age_source = sources["max_age"]
    selected = {t.name for t in targets if _chosen(t, run["only"], names)}
    if age_source is not None and not selected & set(age_users):
        problems.warn(
            ConfigWarning(
                "max_age_unused",
                age_source,
                f"{age_source} is not used: every target sets its own max_age, which wins "
                "over the global default",
            )
        )
    if problems.items:
        raise ConfigError(problems.items, log_options(cli, environ))
    return Settings(
        targets=tuple(targets),
        names=names,
        config_file=config_file,
        log_context=downward_context(environ),
        warnings=tuple(problems.warnings),
        **run,
    )


def downward_context(environ: Mapping[str, str]) -> dict[str, str]:
    """The Kubernetes downward-API fields added to every log line."""
    return {name: value for key, name in DOWNWARD_API.items() if (value := environ.get(key))}


def target_summary(target: TargetSettings) -> dict[str, Any]:
    """One target's effective settings, with secrets redacted."""
    shown = schema.view(target, redact)
    if isinstance(target.max_age, int) and target.max_age:
        shown["max_age"] = format_duration(target.max_age)
    return {"name": target.name, "kind": target.kind, **shown, "max_age_seconds": target.max_age}


def effective_config(settings: Settings) -> dict[str, Any]:
    """The whole effective configuration as printed by --check-config."""
    grouped: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for target in settings.targets:
        grouped[target.kind].append(target_summary(target))
    return {
        "config_file": settings.config_file,
        **schema.view(settings, redact),
        "target_names": list(settings.names) if settings.names is not None else None,
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
