"""The leaf partitions of a partitioned job table, read from the catalog.

Each leaf is swept like a plain table, so each gets a TableInfo of its own: its
size, its own index and privileges (a partition queried by name checks its own
grants, not the parent's). For `partitions = "drop"` a leaf also carries what
decides whether it may go whole: its upper bound, whether it is the default
partition, and whether this role owns it and the parent (DETACH and DROP need both).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from psycopg import sql

from cleanup.errors import TargetError
from cleanup.targets.postgres.catalog import TableInfo
from cleanup.targets.postgres.db import Connection
from cleanup.targets.postgres.settings import PostgresSettings

_STRATEGIES = {"r": "RANGE", "l": "LIST", "h": "HASH"}


@dataclass(frozen=True)
class Layout:
    """How the parent is partitioned."""

    strategy: str  # RANGE, LIST or HASH
    # The partition key is the timestamp column alone, so bounds tell a partition's age.
    keyed_by_timestamp: bool
    has_default: bool


@dataclass(frozen=True)
class Leaf:
    info: TableInfo
    ident: sql.Identifier
    bound: str  # as pg_get_expr prints it: FOR VALUES FROM (...) TO (...), or DEFAULT
    upper: str | None  # the upper bound's literal; None for MAXVALUE, DEFAULT, LIST, HASH
    is_default: bool
    may_drop: bool  # this role owns the leaf and the parent


def layout(conn: Connection, s: PostgresSettings, parent: TableInfo) -> Layout:
    row = conn.execute(
        "SELECT p.partstrat::text, p.partnatts, p.partdefid <> 0,"
        " p.partnatts = 1 AND p.partexprs IS NULL AND a.attname::text IS NOT DISTINCT FROM %s"
        " FROM pg_catalog.pg_partitioned_table p"
        " LEFT JOIN pg_catalog.pg_attribute a"
        " ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]"
        " WHERE p.partrelid = %s",
        (s.timestamp_column, parent.oid),
    ).fetchone()
    if row is None:
        raise TargetError(f"table {parent.qualified!r} is no longer partitioned")
    return Layout(_STRATEGIES.get(str(row[0]), str(row[0])), bool(row[3]), bool(row[2]))


def leaves(conn: Connection, s: PostgresSettings, parent: TableInfo) -> list[Leaf]:
    """Every leaf partition, in creation order.

    A partition that is a foreign table cannot be swept by physical ranges: TargetError.
    Sub-partitions are leaves like any other (rows are swept where they live).
    """
    rows = conn.execute(
        "SELECT c.oid::bigint, n.nspname::text, c.relname::text, c.relkind::text, c.relpages,"
        " c.reltuples::float8, has_table_privilege(c.oid, 'SELECT'),"
        " has_table_privilege(c.oid, 'DELETE'), has_any_column_privilege(c.oid, 'UPDATE'),"
        " pg_has_role(c.relowner, 'USAGE') AND pg_has_role(p.relowner, 'USAGE'),"
        " coalesce(pg_get_expr(c.relpartbound, c.oid), ''),"
        " EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a"
        "   ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        "   WHERE i.indrelid = c.oid AND i.indisvalid AND a.attname = %s),"
        " current_user::text, t.isleaf"
        " FROM pg_partition_tree(%s::oid) t"
        " JOIN pg_catalog.pg_class c ON c.oid = t.relid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_class p ON p.oid = t.parentrelid"
        " WHERE t.level > 0 ORDER BY c.oid",
        (s.timestamp_column, parent.oid),
    ).fetchall()
    found: list[Leaf] = []
    for (
        oid,
        schema,
        name,
        relkind,
        pages,
        tuples,
        select,
        delete,
        lock,
        owned,
        bound,
        *rest,
    ) in rows:
        indexed, role, isleaf = rest
        qualified = f"{schema}.{name}"
        if not isleaf:
            continue
        if relkind != "r":
            raise TargetError(
                f"partition {qualified!r} of table {parent.qualified!r} is not a plain table"
                f" (relkind {relkind!r}): it cannot be swept in physical ranges"
            )
        refused = ""
        if not select or not delete:
            missing = ", ".join(p for p, ok in (("SELECT", select), ("DELETE", delete)) if not ok)
            # Partitions queried by name check their own grants, not the parent's.
            refused = (
                f"the database role {role!r} lacks {missing} on partition {qualified!r}"
                f" of table {parent.qualified!r}: grant it (GRANT {missing} ON {qualified}"
                f" TO {role})"
            )
        info = replace(
            parent,
            oid=int(str(oid)),
            qualified=qualified,
            relpages=int(str(pages)),
            reltuples=float(str(tuples)),
            timestamp_indexed=bool(indexed),
            can_lock_rows=bool(lock),
            delete_refused=refused,
            partitioned=False,
        )
        text = str(bound)
        found.append(
            Leaf(
                info,
                sql.Identifier(str(schema), str(name)),
                text,
                upper_bound(text),
                text == "DEFAULT",
                bool(owned),
            )
        )
    return found


def sub_partitioned(conn: Connection, parent: TableInfo) -> str:
    """The name of a partition that is itself partitioned, or ""."""
    row = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_partition_tree(%s::oid) t"
        " JOIN pg_catalog.pg_class c ON c.oid = t.relid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE t.level > 0 AND NOT t.isleaf ORDER BY c.oid LIMIT 1",
        (parent.oid,),
    ).fetchone()
    return str(row[0]) if row else ""


def upper_bound(bound: str) -> str | None:
    """The literal of a one-column RANGE bound's upper end, as the server printed it.

    `FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')` gives
    `2026-02-01 00:00:00+00`; MAXVALUE, MINVALUE, DEFAULT, LIST and HASH bounds give None.
    """
    marker = ") TO ("
    if not bound.startswith("FOR VALUES FROM (") or not bound.endswith(")"):
        return None
    # The lower bound is a quoted literal or MINVALUE: skip it, honouring '' escapes.
    rest = bound[len("FOR VALUES FROM (") :]
    end = _literal_end(rest)
    if end is None or not rest[end:].startswith(marker):
        return None
    upper = rest[end + len(marker) : -1]
    close = _literal_end(upper)
    if close != len(upper) or not upper.startswith("'"):
        return None  # MAXVALUE, or more than one column
    return upper[1:-1].replace("''", "'")


def _literal_end(text: str) -> int | None:
    """Where the first value of `text` ends: a quoted literal or a bare word."""
    if not text.startswith("'"):
        cut = text.find(")")
        return None if cut < 0 else cut
    i = 1
    while i < len(text):
        if text[i] == "'":
            if text[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    return None


_CASTS = {
    "timestamptz": sql.SQL("timestamptz"),
    "timestamp": sql.SQL("timestamp"),
    "date": sql.SQL("date"),
}


def ends_by(conn: Connection, leaf: Leaf, cutoff: datetime) -> bool:
    """Whether the leaf's range ends at or before the cutoff (its upper bound is exclusive,
    so every row it can hold is older than the cutoff).

    The literal is read as the column's own type; the session's TimeZone is UTC, so a
    `timestamp` or `date` bound compares as UTC, as the rows themselves do.
    """
    if leaf.upper is None:
        return False
    query = sql.SQL("SELECT CAST(%s AS {})::timestamptz <= %s").format(
        _CASTS[leaf.info.timestamp_type]
    )
    row = conn.execute(query, (leaf.upper, cutoff)).fetchone()
    return bool(row and row[0])


def drop_problem(conn: Connection, s: PostgresSettings, parent: TableInfo, shape: Layout) -> str:
    """Why `partitions = "drop"` cannot apply to this table, or "" when it can."""
    fix = 'set partitions = "rows" to delete its rows in batches'
    if shape.strategy != "RANGE":
        return (
            f'table {parent.qualified!r} is {shape.strategy}-partitioned: partitions = "drop"'
            f" needs RANGE partitioning on the timestamp column, whose bounds tell a"
            f" partition's age; {fix}"
        )
    nested = sub_partitioned(conn, parent)
    if nested:
        return (
            f"table {parent.qualified!r} is sub-partitioned (partition {nested!r} is itself"
            f' partitioned): partitions = "drop" handles one level of partitions; {fix}'
        )
    return ""
