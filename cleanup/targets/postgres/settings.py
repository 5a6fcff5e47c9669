"""The postgres target's settings: declared once (see cleanup.schema), checked here.

Imports nothing of psycopg: the configuration is read on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cleanup.schema import (
    Kind,
    Problems,
    choice,
    duration,
    env_entry,
    integer,
    string,
    strings,
)

ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# libpq's own variables: with any of them set, an empty DSN still names a server.
LIBPQ_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


@dataclass(frozen=True)
class PostgresSettings:
    kind: ClassVar[str] = "postgres"
    name: str = string("Unique across all targets; shows in logs as `target`.", non_empty=True)
    table: str = string("The job table.", non_empty=True, env="CLEANUP_PG_TABLE")
    max_age: int = duration(
        "Rows whose timestamp is older than this go; default: the global `max_age`.",
        default=None,
    )
    schema: str = string("Schema of the table.", "public", non_empty=True)
    timestamp_column: str = string(
        "timestamptz, timestamp (read as UTC) or date column compared with the cutoff.",
        "created_at",
        non_empty=True,
        env="CLEANUP_PG_TIMESTAMP_COLUMN",
    )
    status_column: str = string(
        'Column holding the job status; "" = no status filter.',
        "status",
        env="CLEANUP_PG_STATUS_COLUMN",
    )
    statuses: tuple[str, ...] = strings(
        "Finished statuses: only rows with one of these are deleted.",
        ("completed", "failed", "cancelled"),
        env="CLEANUP_PG_STATUSES",
    )
    batch_size: int = integer(
        "Rows per delete batch (one short transaction each).", 5000, minimum=1, maximum=100_000
    )
    dsn_env: str = string(
        "Name of the environment variable holding the DSN (never the DSN itself).",
        "CLEANUP_DATABASE_URL",
        non_empty=True,
        pattern=ENV_NAME,
        pattern_doc="not an environment variable name",
    )
    partitions: str = choice(
        'Partitioned tables: "rows" sweeps each partition in batches; "drop" detaches and '
        "drops whole partitions that lie before the cutoff and hold only eligible rows.",
        ("rows", "drop"),
        "rows",
    )
    # The DSN is a secret: never in repr, logs or --check-config output.
    dsn: str = string(
        "The DSN, read from the variable `dsn_env` names.", "", secret=True, in_file=False
    )
    # Whether libpq's own PG* variables are set, so that an empty DSN still reaches a server.
    libpq_env: bool = False


def _check(values: dict[str, Any], where: str, problems: Problems) -> None:
    if values["status_column"] and not values["statuses"]:
        problems.add(f"{where}: statuses = []: must list at least one finished status")


def _from_environment(values: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    dsn_env = values.get("dsn_env") or ""
    return {
        "dsn": environ.get(dsn_env, "") if dsn_env else "",
        "libpq_env": any(environ.get(key) for key in LIBPQ_ENV),
    }


def _quick(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    entry = env_entry(PostgresSettings, environ)
    if not entry:
        return []
    return [("CLEANUP_PG_*", {"name": "postgres", **entry})]


KIND = Kind("postgres", PostgresSettings, _check, _quick, _from_environment)
