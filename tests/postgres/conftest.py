"""Fixtures for the PostgreSQL target: one server per session, a fresh table per test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.support.pgserver import postgres_server


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


def connect(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(dsn, autocommit=True)


@dataclass
class Jobs:
    """A fresh job table, the DSN to reach it and a config directory for runs against it."""

    dsn: str
    name: str
    tmp: Path

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier("public", self.name)

    def execute(self, query: str | sql.Composable, params: Any = None) -> None:
        with connect(self.dsn) as conn:
            conn.execute(query, params)

    def scalar(self, query: str | sql.Composable, params: Any = None) -> Any:
        with connect(self.dsn) as conn:
            row = conn.execute(query, params).fetchone()
        assert row is not None
        return row[0]

    def fill(self, count: int, age: str, status: str | None) -> None:
        """Insert `count` rows created `age` ago (a PostgreSQL interval) with `status`."""
        self.execute(
            sql.SQL(
                "INSERT INTO {} (created_at, status, payload)"
                " SELECT now() - %s::interval, %s, repeat('x', 50) FROM generate_series(1, %s)"
            ).format(self.ident),
            (age, status, count),
        )

    def count(self, where: str = "true") -> int:
        return int(
            self.scalar(sql.SQL("SELECT count(*) FROM {} WHERE " + where).format(self.ident))
        )

    def eligible(self) -> int:
        return self.count(
            "created_at < now() - interval '30 days'"
            " AND status IN ('completed', 'failed', 'cancelled')"
        )

    def config(self, dsn_env: str = "CLEANUP_DATABASE_URL", **keys: Any) -> Path:
        """A config file with one postgres target named `jobs` on this table."""
        entry: dict[str, Any] = {
            "name": "jobs",
            "table": self.name,
            "max_age": "30d",
            "dsn_env": dsn_env,
            **keys,
        }
        lines = ["[[postgres]]"]
        for key, value in entry.items():
            lines.append(f"{key} = {json.dumps(value)}")
        path = self.tmp / f"config-{uuid.uuid4().hex[:8]}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def env(self, dsn: str | None = None) -> dict[str, str]:
        return {"CLEANUP_DATABASE_URL": dsn or self.dsn}

    def argv(self, *extra: str, **keys: Any) -> list[str]:
        return ["--config", str(self.config(**keys)), *extra]


def create_jobs_table(
    dsn: str, name: str, primary_key: bool = True, ts_type: str = "timestamptz"
) -> None:
    key = "id bigserial PRIMARY KEY" if primary_key else "id bigint"
    with connect(dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (" + key + ", created_at " + ts_type + ", status text,"
                " payload text)"
            ).format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE INDEX ON {} (created_at)").format(sql.Identifier(name)))


@pytest.fixture
def jobs(pg_dsn: str, tmp_path: Path) -> Iterator[Jobs]:
    """A fresh `jobs_<random>` table with a primary key and an index on created_at."""
    name = f"jobs_{uuid.uuid4().hex[:10]}"
    create_jobs_table(pg_dsn, name)
    table = Jobs(pg_dsn, name, tmp_path)
    yield table
    table.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table.ident))


ROLE_PASSWORD = "Zq7-very-secret-pa55word"


@pytest.fixture
def make_role(jobs: Jobs) -> Iterator[Callable[[str], str]]:
    """Create login roles with given grants on the `jobs` table (e.g. "SELECT, DELETE",
    or "" for none); each call returns the role's DSN. The roles are dropped afterwards."""
    created: list[str] = []

    def make(grants: str) -> str:
        role = f"r{len(created)}_{jobs.name}"
        with connect(jobs.dsn) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(ROLE_PASSWORD)
                )
            )
            if grants:
                conn.execute(
                    sql.SQL("GRANT " + grants + " ON {} TO {}").format(
                        jobs.ident, sql.Identifier(role)
                    )
                )
        created.append(role)
        host = jobs.dsn.split("@", 1)[1]
        return f"postgresql://{role}:{ROLE_PASSWORD}@{host}"

    yield make
    with connect(jobs.dsn) as conn:
        for role in created:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
