"""Exclude globs shared by the volume and S3 targets (docs/volumes.md, docs/s3.md).

fnmatch rules, case-sensitive, `*` also matches `/`. A pattern without `/`
matches the entry's name; a pattern with `/` must match the whole path
relative to the root (or to the S3 prefix).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))


class Excluder:
    """Matches names and relative paths against the exclude globs with two compiled regexes."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        self._names = _compile([p for p in patterns if "/" not in p])
        self._paths = _compile([p for p in patterns if "/" in p])

    @property
    def needs_path(self) -> bool:
        """Whether any pattern looks at the relative path (callers then build it per entry)."""
        return self._paths is not None

    def __bool__(self) -> bool:
        return self._names is not None or self._paths is not None

    def excluded(self, name: str, relpath: str) -> bool:
        if self._names is not None and self._names.match(name):
            return True
        return self._paths is not None and self._paths.match(relpath) is not None
