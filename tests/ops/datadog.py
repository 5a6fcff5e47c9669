"""Datadog log search queries and log pipelines, read and applied to real log lines.

`parse_search` reads the search syntax the shipped dashboard and pipeline use: tags
(`source:cleanup`), template variables (`$kube_namespace`), attribute terms
(`@event:run_finished`, `@cleanup.status:(failed OR partial)`), the reserved
`status:` and `-` for negation. Anything else is a SearchError.

`apply_pipeline` does what the pipeline's processors do to one JSON line (date,
status and attribute remappers, category processor), so the dashboard's queries
can be evaluated against the attributes Datadog would really hold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROCESSOR_KEYS: dict[str, set[str]] = {
    "date-remapper": {"type", "name", "is_enabled", "sources"},
    "status-remapper": {"type", "name", "is_enabled", "sources"},
    "attribute-remapper": {
        "type",
        "name",
        "is_enabled",
        "sources",
        "source_type",
        "target",
        "target_type",
        "preserve_source",
        "override_on_conflict",
    },
    "category-processor": {"type", "name", "is_enabled", "target", "categories"},
}
# Built-in columns of a list_stream widget (the log status, date, host, service, message).
RESERVED_COLUMNS = {"status_line", "timestamp", "host", "service", "content"}
_TERM = re.compile(r"(-?)(@?[\w.]+):(\([^)]*\)|[^\s()]+)|(-?)\$(\w+)")


class SearchError(ValueError):
    """A search query outside the understood syntax."""


@dataclass(frozen=True)
class Term:
    """One search term: `kind` is tag, attribute, status or variable."""

    kind: str
    name: str
    values: tuple[str, ...] = ()
    negated: bool = False


def parse_search(query: str) -> list[Term]:
    """Split a search into terms (implicit AND); raises SearchError on anything unknown."""
    terms: list[Term] = []
    pos = 0
    while pos < len(query):
        if query[pos].isspace():
            pos += 1
            continue
        match = _TERM.match(query, pos)
        if match is None:
            raise SearchError(f"cannot read {query[pos:]!r} in {query!r}")
        pos = match.end()
        if match.group(5):
            terms.append(Term("variable", match.group(5), negated=bool(match.group(4))))
            continue
        negated, name, raw = bool(match.group(1)), match.group(2), match.group(3)
        if raw.startswith("("):
            parts = raw[1:-1].split()
            values = tuple(parts[::2])
            if any(op != "OR" for op in parts[1::2]) or len(parts) % 2 == 0:
                raise SearchError(f"only `a OR b` groups are understood: {raw!r}")
        else:
            values = (raw,)
        if name.startswith("@"):
            kind = "attribute"
        elif name == "status":
            kind = "status"
        else:
            kind = "tag"
        terms.append(Term(kind, name.lstrip("@"), values, negated))
    return terms


def official_status(value: Any) -> str:
    """What Datadog's status remapper makes of a value (its documented prefix rules)."""
    text = str(value).lower()
    rules = [
        (("emerg", "f"), "emergency"),
        (("a",), "alert"),
        (("c",), "critical"),
        (("err",), "error"),
        (("w",), "warn"),
        (("n",), "notice"),
        (("i",), "info"),
        (("d", "t", "v"), "debug"),
        (("o", "s"), "ok"),
    ]
    for prefixes, status in rules:
        if text.startswith(prefixes):
            return status
    return "info"


def lookup(attributes: Mapping[str, Any], path: str) -> Any:
    """An attribute by dotted path (`cleanup.status`), or None when absent."""
    node: Any = attributes
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def matches(terms: list[Term], log: Mapping[str, Any], tags: Mapping[str, str]) -> bool:
    """Whether one processed log (`attributes` plus official `status`) matches every term."""
    for term in terms:
        if term.kind == "variable":
            continue  # a template variable defaulting to `*` matches everything
        if term.kind == "tag":
            hit = tags.get(term.name) in term.values
        elif term.kind == "status":
            hit = log["status"] in term.values
        else:
            value = lookup(log["attributes"], term.name)
            hit = value is not None and _text(value) in term.values
        if hit == term.negated:
            return False
    return True


def _set(attributes: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = attributes
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def apply_pipeline(
    pipeline: Mapping[str, Any], line: Mapping[str, Any], tags: Mapping[str, str]
) -> dict[str, Any]:
    """One JSON line as Datadog holds it after the pipeline: `attributes` and `status`."""
    attributes: dict[str, Any] = {key: value for key, value in line.items() if key != "message"}
    log: dict[str, Any] = {"attributes": attributes, "status": "info", "message": line["message"]}
    for processor in pipeline["processors"]:
        kind = processor["type"]
        if kind == "date-remapper":
            continue  # the date is not queried by the dashboard
        if kind == "status-remapper":
            value = lookup(attributes, processor["sources"][0])
            if value is not None:
                log["status"] = official_status(value)
        elif kind == "attribute-remapper":
            value = lookup(attributes, processor["sources"][0])
            if value is not None and lookup(attributes, processor["target"]) is None:
                _set(attributes, processor["target"], value)
                if not processor["preserve_source"]:
                    attributes.pop(processor["sources"][0], None)
        elif kind == "category-processor":
            for category in processor["categories"]:
                if matches(parse_search(category["filter"]["query"]), log, tags):
                    _set(attributes, processor["target"], category["name"])
                    break
        else:
            raise SearchError(f"processor type {kind!r} is not understood")
    return log
