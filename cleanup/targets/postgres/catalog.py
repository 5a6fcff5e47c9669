"""What the postgres target reads from the catalog: the table, its columns, privileges.

Every check only reads, so preflight and the dry run use the same code as a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cleanup.errors import TargetError
from cleanup.targets.postgres.db import Connection
from cleanup.targets.postgres.settings import PostgresSettings

_TIMESTAMP_TYPES = {1184: "timestamptz", 1114: "timestamp", 1082: "date"}


@dataclass(frozen=True)
class TableInfo:
    oid: int
    qualified: str  # schema.table as configured, for messages
    relpages: int
    reltuples: float
    timestamp_type: str
    timestamp_indexed: bool
    # PostgreSQL allows FOR UPDATE only with UPDATE on at least one column.
    can_lock_rows: bool
    # Why this role may not DELETE from the table, with the grant that fixes it; "" if it may.
    delete_refused: str = ""
    # Declaratively partitioned: the rows live in its leaf partitions (postgres/partitions.py).
    partitioned: bool = False


@dataclass
class Examined:
    """What a look at the catalog found: the table when it is usable, and every problem.

    A missing DELETE privilege is not among `problems` (a run counts what it cannot
    delete and reports those rows failed): it is `delete_refused`.
    """

    info: TableInfo | None = None
    problems: list[str] = field(default_factory=list)
    delete_refused: str = ""


def examine(conn: Connection, s: PostgresSettings) -> Examined:
    """Look up the table, its kind, this role's privileges and the columns, reading only
    the catalog; every problem is a sentence that names what to fix."""
    qualified = f"{s.schema}.{s.table}"
    row = conn.execute(
        "SELECT c.oid::bigint, c.relkind::text, c.relpages, c.reltuples::float8,"
        " has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'DELETE'),"
        " has_any_column_privilege(c.oid, 'UPDATE'), current_user::text"
        " FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (s.schema, s.table),
    ).fetchone()
    if row is None:
        database = conn.info.dbname
        return Examined(
            problems=[
                f"table {qualified!r} does not exist in database {database!r}: check `table`"
                " and `schema` of this target, and the database its DSN points to"
            ]
        )
    oid, relpages, reltuples = _int(row[0]), _int(row[2]), float(str(row[3]))
    relkind, can_select, can_delete, can_lock, role = row[1], row[4], row[5], row[6], row[7]
    if relkind not in ("r", "p"):
        return Examined(
            problems=[
                f"{qualified!r} is not a table (relkind {relkind!r}): name a plain or partitioned table"
            ]
        )
    found = Examined()
    # A partitioned table's rows are deleted in its partitions, whose own grants count.
    if not can_delete and relkind == "r":
        found.delete_refused = (
            f"the database role {role!r} lacks DELETE on table {qualified!r}:"
            f" grant it (GRANT DELETE ON {qualified} TO {role})"
        )
    if not can_select:
        found.problems.append(
            f"the database role {role!r} lacks SELECT on table {qualified!r}:"
            f" grant it (GRANT SELECT ON {qualified} TO {role})"
        )
    wanted = [s.timestamp_column] + ([s.status_column] if s.status_column else [])
    columns = {
        str(name): (_int(typoid), str(typname), _int(attnum))
        for name, typoid, typname, attnum in conn.execute(
            "SELECT attname::text, atttypid::bigint, format_type(atttypid, NULL), attnum"
            " FROM pg_catalog.pg_attribute"
            " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND attname = ANY(%s)",
            (oid, wanted),
        )
    }
    for column in wanted:
        if column not in columns:
            found.problems.append(
                f"column {column!r} does not exist in table {qualified!r}: check"
                f" {'timestamp_column' if column == s.timestamp_column else 'status_column'}"
            )
    timestamp = columns.get(s.timestamp_column)
    if timestamp and timestamp[0] not in _TIMESTAMP_TYPES:
        found.problems.append(
            f"column {s.timestamp_column!r} of table {qualified!r} has type {timestamp[1]!r};"
            " expected timestamptz, timestamp or date"
        )
    if found.problems or timestamp is None:
        return found
    indexed = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index"
        " WHERE indrelid = %s AND indkey[0] = %s AND indisvalid)",
        (oid, timestamp[2]),
    ).fetchone()
    found.info = TableInfo(
        oid=oid,
        qualified=qualified,
        relpages=relpages,
        reltuples=reltuples,
        timestamp_type=_TIMESTAMP_TYPES[timestamp[0]],
        timestamp_indexed=bool(indexed and indexed[0]),
        can_lock_rows=bool(can_lock),
        delete_refused=found.delete_refused,
        partitioned=relkind == "p",
    )
    return found


def inspect_table(conn: Connection, s: PostgresSettings) -> TableInfo:
    """The table, checked as `examine` does; TargetError naming the first problem."""
    found = examine(conn, s)
    if found.info is None:
        raise TargetError(found.problems[0])
    return found.info


def table_lock_conflicts(conn: Connection, oid: int) -> bool:
    """Whether another session holds, or waits for, a table lock that blocks DELETE."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'relation'"
        " AND relation = %s AND pid <> pg_backend_pid() AND mode IN"
        " ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'))",
        (oid,),
    ).fetchone()
    return bool(row and row[0])


def relation_blocks(conn: Connection, oid: int) -> int:
    row = conn.execute(
        "SELECT (pg_relation_size(%s::oid) / current_setting('block_size')::bigint)::bigint",
        (oid,),
    ).fetchone()
    return _int(row[0]) if row else 0


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer from the catalog, got {type(value).__name__}")
    return value
