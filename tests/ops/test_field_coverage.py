"""Every field, event and value the dashboards, pipeline and alerts use is really emitted.

The queries are parsed (LogQL for Grafana and the Loki ruler, Datadog search syntax
for the Datadog dashboard and pipeline) and evaluated against the JSON lines of
real runs (tests/ops/conftest.py). A renamed field or status value leaves some
filter matching nothing, and the test names the query that went blind.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.ops import datadog, logql
from tests.ops.conftest import Emitted

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "dashboards" / "grafana" / "cleanup.json"
DD_DASHBOARD = REPO / "dashboards" / "datadog" / "dashboard.json"
DD_PIPELINE = REPO / "dashboards" / "datadog" / "pipeline.json"
DD_FACETS = REPO / "dashboards" / "datadog" / "facets.json"
LOKI_RULES = REPO / "alerts" / "loki-rules.yaml"
# Stream labels come from the log agent (Promtail, Alloy), not from the tool; the
# container name is the chart's (tests/ops/test_chart_ops.py checks it renders so).
STREAM_LABELS = {"namespace": None, "container": "cleanup"}
DD_TAGS = {"source": "cleanup"}


@dataclass(frozen=True)
class LokiQuery:
    where: str
    expr: str
    legend: str = ""
    fields: tuple[str, ...] = ()  # field names a panel's transformations use
    annotations: tuple[str, ...] = ()  # alert annotation templates


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _transformation_fields(panel: Mapping[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    for step in panel.get("transformations", []):
        options = step.get("options", {})
        names += options.get("includeByName", {})
        names += options.get("fields", {})
        names += [rule["field"] for rule in options.get("sort", [])]
    return tuple(names)


def grafana_queries(dashboard: Mapping[str, Any]) -> Iterator[LokiQuery]:
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            yield LokiQuery(f"variable {variable['name']}", query["stream"])
            yield LokiQuery(f"variable {variable['name']} label", "{" + query["label"] + '=~".+"}')
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield LokiQuery(
                f"panel {panel['title']!r} {target['refId']}",
                target["expr"],
                target.get("legendFormat", ""),
                _transformation_fields(panel),
            )


def loki_rule_queries(rules: Mapping[str, Any]) -> Iterator[LokiQuery]:
    for group in rules["groups"]:
        for rule in group["rules"]:
            texts = tuple(rule.get("annotations", {}).values()) + tuple(
                rule.get("labels", {}).values()
            )
            yield LokiQuery(f"rule {rule['alert']}", rule["expr"], annotations=texts)


def _check_log_expr(
    where: str, log: logql.LogExpr, lines: Sequence[Mapping[str, Any]]
) -> tuple[list[str], list[dict[str, str]]]:
    problems: list[str] = []
    for matcher in log.selector:
        if matcher.label not in STREAM_LABELS:
            problems.append(f"{where}: stream label {matcher.label!r} is not set by the log agent")
        expected = STREAM_LABELS.get(matcher.label)
        if expected is not None and (matcher.op, matcher.value) != ("=", expected):
            problems.append(f"{where}: {matcher.label}{matcher.op}{matcher.value!r} != {expected}")
    if not log.stages:
        return problems, []  # a bare stream selector (a variable's label_values)
    if not any(stage.kind == "parser" for stage in log.stages):
        problems.append(f"{where}: no `| json`, so no field of the line can be used")
        return problems, []
    for index, stage in enumerate(log.stages):
        if stage.kind not in ("label_filter", "unwrap") or stage.name == "__error__":
            continue
        before = logql.evaluate(logql.LogExpr(log.selector, log.stages[:index]), lines)
        if not any(stage.name in labels for labels in before.labels):
            problems.append(f"{where}: field {stage.name!r} is in no line reaching `{stage}`")
        for literal in logql.alternatives(stage):
            alone = logql.LogExpr(
                log.selector,
                [*log.stages[:index], logql.Stage("label_filter", stage.name, "=", literal)],
            )
            if not logql.evaluate(alone, lines).labels:
                problems.append(f"{where}: {stage.name}={literal!r} is never emitted")
    result = logql.evaluate(log, lines)
    problems += [f"{where}: {p}" for p in result.problems]
    if not result.labels:
        problems.append(f"{where}: matches no emitted line")
    return problems, result.labels


def loki_problems(queries: Sequence[LokiQuery], lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """What in these LogQL queries does not match the emitted lines (empty = all good)."""
    problems: list[str] = []
    for query in queries:
        try:
            parsed = logql.parse(query.expr)
        except logql.ParseError as exc:
            problems.append(f"{query.where}: {exc}")
            continue
        if not parsed.logs:
            problems.append(f"{query.where}: no log expression")
        kept: list[dict[str, str]] = []
        for log in parsed.logs:
            found, labels = _check_log_expr(query.where, log, lines)
            problems += found
            kept += labels
        for label in parsed.grouping:
            if label not in STREAM_LABELS and (not kept or any(label not in k for k in kept)):
                problems.append(f"{query.where}: grouped by {label!r}, missing from kept lines")
        shown = re.findall(r"\{\{\s*\.?\$?(?:labels\.)?(\w+)\s*\}\}", query.legend)
        shown += [
            name for text in query.annotations for name in re.findall(r"\$labels\.(\w+)", text)
        ]
        for name in shown:
            if name not in parsed.grouping:
                problems.append(f"{query.where}: shows {name!r}, which the query does not keep")
        for name in query.fields:
            if name != "Time" and not any(name in k for k in kept):
                problems.append(f"{query.where}: transformation field {name!r} never emitted")
    return problems


def _dd_requests(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for widget in dashboard["widgets"]:
        definition = widget["definition"]
        for request in definition.get("requests", []):
            yield definition["title"], request


def _dd_check_search(
    where: str,
    query: str,
    logs: Sequence[dict[str, Any]],
    variables: set[str],
) -> tuple[list[str], list[dict[str, Any]]]:
    problems: list[str] = []
    try:
        terms = datadog.parse_search(query)
    except datadog.SearchError as exc:
        return [f"{where}: {exc}"], []
    for index, term in enumerate(terms):
        if term.kind == "variable":
            if term.name not in variables:
                problems.append(f"{where}: template variable ${term.name} is not defined")
            continue
        if term.kind == "tag":
            if DD_TAGS.get(term.name) not in term.values:
                problems.append(f"{where}: tag {term.name}:{term.values} is not the pipeline's")
            continue
        before = [log for log in logs if datadog.matches(terms[:index], log, DD_TAGS)]
        if term.kind == "attribute" and not any(
            datadog.lookup(log["attributes"], term.name) is not None for log in before
        ):
            problems.append(f"{where}: attribute @{term.name} is in no processed line")
        for value in term.values:
            alone = datadog.Term(term.kind, term.name, (value,), term.negated)
            if not any(datadog.matches([*terms[:index], alone], log, DD_TAGS) for log in logs):
                problems.append(f"{where}: {term.kind} {term.name}:{value} is never emitted")
    kept = [log for log in logs if datadog.matches(terms, log, DD_TAGS)]
    if not kept:
        problems.append(f"{where}: {query!r} matches no emitted line")
    return problems, kept


def datadog_problems(
    dashboard: Mapping[str, Any],
    pipeline: Mapping[str, Any],
    facets: Mapping[str, Any],
    lines: Sequence[Mapping[str, Any]],
) -> list[str]:
    """What in the Datadog dashboard, pipeline and facets does not match the emitted lines."""
    problems: list[str] = []
    for processor in pipeline["processors"]:
        for source in processor.get("sources", []):
            if not any(source in line for line in lines):
                problems.append(f"pipeline {processor['name']!r}: source {source!r} never emitted")
    try:
        logs = [datadog.apply_pipeline(pipeline, line, DD_TAGS) for line in lines]
    except datadog.SearchError as exc:
        return [*problems, f"pipeline: {exc}"]
    for processor in pipeline["processors"]:
        if processor["type"] == "category-processor":
            for category in processor["categories"]:
                where = f"pipeline {processor['name']!r} category {category['name']!r}"
                problems += _dd_check_search(where, category["filter"]["query"], logs, set())[0]
    variables = {v["name"] for v in dashboard.get("template_variables", [])}
    for title, request in _dd_requests(dashboard):
        searches: list[tuple[str, dict[str, Any]]] = []
        if "queries" in request:
            searches = [(q["search"]["query"], q) for q in request["queries"]]
        else:
            searches = [(request["query"]["query_string"], request)]
        for search, query in searches:
            where = f"widget {title!r}"
            found, kept = _dd_check_search(where, search, logs, variables)
            problems += found
            metric = query.get("compute", {}).get("metric")
            if metric and any(
                not isinstance(datadog.lookup(k["attributes"], metric[1:]), int | float)
                for k in kept
            ):
                problems.append(f"{where}: measure {metric} is not a number on every line")
            for group in query.get("group_by", []):
                if any(datadog.lookup(k["attributes"], group["facet"][1:]) is None for k in kept):
                    problems.append(f"{where}: group by {group['facet']} missing on some lines")
            for column in request.get("columns", []):
                name = column["field"]
                if name in datadog.RESERVED_COLUMNS:
                    continue
                if not name.startswith("@") or not any(
                    datadog.lookup(k["attributes"], name[1:]) is not None for k in kept
                ):
                    problems.append(f"{where}: column {name} is on no line it lists")
    for facet in facets["facets"] + facets["measures"]:
        values = [datadog.lookup(log["attributes"], facet["path"][1:]) for log in logs]
        present = [v for v in values if v is not None]
        if not present:
            problems.append(f"facet {facet['path']}: never emitted")
        numeric = facet in facets["measures"] or facet["type"] == "integer"
        if numeric and any(isinstance(v, bool) or not isinstance(v, int | float) for v in present):
            problems.append(f"facet {facet['path']}: declared numeric, emitted otherwise")
    return problems


def _rename(lines: Sequence[Mapping[str, Any]], old: str, new: str) -> list[dict[str, Any]]:
    renamed = copy.deepcopy([dict(line) for line in lines])
    for line in renamed:
        if old in line:
            line[new] = line.pop(old)
    return renamed


def _revalue(lines: Sequence[Mapping[str, Any]], field: str, old: str, new: str) -> list[Any]:
    changed = copy.deepcopy([dict(line) for line in lines])
    for line in changed:
        if line.get(field) == old:
            line[field] = new
    return changed


def _all_problems(lines: Sequence[Mapping[str, Any]]) -> list[str]:
    queries = [
        *grafana_queries(_load(GRAFANA)),
        *loki_rule_queries(yaml.safe_load(LOKI_RULES.read_text())),
    ]
    return loki_problems(queries, lines) + datadog_problems(
        _load(DD_DASHBOARD), _load(DD_PIPELINE), _load(DD_FACETS), lines
    )


def test_runs_emit_every_status_kind_and_event(emitted: Emitted) -> None:
    """The real runs behind these checks produced every target status, event and exit code."""
    statuses = emitted.values("status", "target_finished")
    assert statuses == {"ok", "partial", "failed", "skipped", "capped", "interrupted"}
    assert emitted.values("status", "run_finished") == {"ok", "failed", "interrupted"}
    events = emitted.values("event")
    assert {
        "run_started",
        "target_started",
        "item_deleted",
        "item_would_delete",
        "item_failed",
        "target_finished",
        "run_finished",
        "config_error",
        "config_warning",
        "target_warning",
        "preflight",
    } <= events
    assert {0, 1, 2, 3, 143} <= set(emitted.exit_codes)
    assert 3 in emitted.values("exit_code", "run_finished")
    assert "max_age_unused" in emitted.values("code", "config_warning")
    assert emitted.values("ready", "preflight") == {True, False}
    assert {"root_empty", "statuses_never_match", "prefix_empty"} <= emitted.values(
        "code", "target_warning"
    )
    predicted = [line for line in emitted.lines if line.get("predicted") is True]
    assert {line["kind"] for line in predicted} == {"volumes", "postgres"}
    assert {line["event"] for line in predicted} == {"item_failed"}
    capped_previews = [
        line
        for line in emitted.lines
        if line["event"] == "target_finished" and line["status"] == "capped" and line["dry_run"]
    ]
    assert capped_previews and all(line["backlog"] >= line["matched"] for line in capped_previews)
    assert emitted.values("kind") == {"volumes", "s3", "postgres"}
    assert emitted.values("dry_run", "target_finished") == {True, False}
    deleting = {
        line["kind"]
        for line in emitted.lines
        if line["event"] == "target_finished" and line["deleted"] > 0
    }
    assert deleting == {"volumes", "s3", "postgres"}


def test_grafana_dashboard_queries_match_emitted_fields_and_values(emitted: Emitted) -> None:
    """Every Grafana query parses and each of its fields, filters and groupings hits real lines."""
    queries = list(grafana_queries(_load(GRAFANA)))
    assert len(queries) >= 9
    assert loki_problems(queries, emitted.lines) == []


def test_loki_rule_queries_match_emitted_fields_and_values(emitted: Emitted) -> None:
    """The Loki ruler's partial/capped, warning and throttling rules parse and see their values in real lines."""
    queries = list(loki_rule_queries(yaml.safe_load(LOKI_RULES.read_text())))
    assert [q.where for q in queries] == [
        "rule CleanupTargetPartialOrCapped",
        "rule CleanupConfigurationWarning",
        "rule CleanupS3Throttled",
    ]
    assert loki_problems(queries, emitted.lines) == []


def test_datadog_dashboard_pipeline_and_facets_match_emitted_fields(emitted: Emitted) -> None:
    """Datadog searches, measures, groupings, columns, pipeline sources and facets hit real lines."""
    assert (
        datadog_problems(_load(DD_DASHBOARD), _load(DD_PIPELINE), _load(DD_FACETS), emitted.lines)
        == []
    )


def test_datadog_pipeline_status_comes_from_level_not_target_status(emitted: Emitted) -> None:
    """After the pipeline, a log's official status follows `level`; a `failed` target is no emergency."""
    pipeline = _load(DD_PIPELINE)
    official = {
        line["level"]: datadog.apply_pipeline(pipeline, line, DD_TAGS)["status"]
        for line in emitted.lines
    }
    assert official == {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}


def test_coverage_check_fails_when_a_field_is_renamed(emitted: Emitted) -> None:
    """Renaming a field (`status`, `deleted`, `target`, `backlog`, ...) or a value (`capped`) fails it."""
    assert _all_problems(emitted.lines) == []
    renames = (
        ("status", "state"),
        ("deleted", "removed"),
        ("target", "name"),
        ("exit_code", "code_of_exit"),
        ("backlog", "pending"),
        ("ready", "ok"),
        ("code", "warning_code"),
        ("predicted", "foreseen"),
    )
    for old, new in renames:
        problems = _all_problems(_rename(emitted.lines, old, new))
        assert any(repr(old) in p or f"@{old}" in p or f" {old}:" in p for p in problems), (
            old,
            problems,
        )
    problems = _all_problems(_revalue(emitted.lines, "status", "capped", "limited"))
    assert any("'capped'" in p or ":capped" in p for p in problems), problems
