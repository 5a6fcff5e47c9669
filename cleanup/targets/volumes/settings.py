"""The volume target's settings: declared once (see cleanup.schema), checked here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cleanup.schema import (
    Kind,
    Problems,
    boolean,
    duration,
    env_entry,
    integer,
    string,
    strings,
)

MAX_WORKERS = 32
# Never swept, however they are spelled (docs/volumes.md).
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


@dataclass(frozen=True)
class VolumeSettings:
    kind: ClassVar[str] = "volumes"
    name: str = string("Unique across all targets; shows in logs as `target`.", non_empty=True)
    path: str = string(
        "Absolute path of the root; the root itself is never removed. The quick target "
        "`CLEANUP_VOLUMES` is a comma list of roots, each named after its last component.",
        env="CLEANUP_VOLUMES",
        pattern="/.*",
        pattern_doc="must be an absolute path",
    )
    max_age: int = duration(
        "Files older than this go; default: the global `max_age`.", default=None
    )
    remove_empty_dirs: bool = boolean(
        "Also remove directories left empty and older than `max_age`.", False
    )
    exclude: tuple[str, ...] = strings(
        "fnmatch globs: without `/` they match the name, with `/` the path relative to the "
        "root; an excluded directory is not entered."
    )
    one_file_system: bool = boolean("Never descend into another mount.", True)
    require_mount: bool = boolean(
        "Fail the target unless `path` is a mount point (an unmounted volume never looks empty).",
        False,
    )
    workers: int = integer(
        "Processes sharing the sweep (this tool's addition; 1 = none).",
        1,
        minimum=1,
        maximum=MAX_WORKERS,
    )


def _check(values: dict[str, Any], where: str, problems: Problems) -> None:
    path = values.get("path")
    if not isinstance(path, str) or not path:
        return
    if not os.path.isabs(path):
        return  # reported by the key's own pattern
    resolved = os.path.realpath(path)
    # Check the spelled path too: on merged-/usr systems /bin resolves to /usr/bin.
    literal = "/" + os.path.normpath(path).lstrip("/")
    for candidate in (literal, resolved):
        if candidate in FORBIDDEN_ROOTS:
            problems.add(
                f"{where}: path = {path!r}: resolves to {candidate!r}, which is never swept"
            )
            break
    values["path"] = resolved


def _quick(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    entries = []
    for path in env_entry(VolumeSettings, environ).get("path", "").split(","):
        path = path.strip()
        if path:
            name = os.path.basename(path.rstrip("/")) or path
            entries.append((f"CLEANUP_VOLUMES ({path!r})", {"name": name, "path": path}))
    return entries


KIND = Kind("volumes", VolumeSettings, _check, _quick)
