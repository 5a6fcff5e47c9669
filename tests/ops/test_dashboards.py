"""The dashboard and pipeline files are well-formed for the tools that import them.

Grafana: panels with queries, no hard-coded datasource uid (a `${datasource}`
variable of type loki), unique ids and refIds, panels on the 24-column grid and not
overlapping, and the six views issue 6 asks for. Datadog: widgets with log queries
whose formulas name their queries, processors with their documented keys.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.ops import datadog, logql
from tests.ops.rules import PROMETHEUS_RULE_SCHEMA

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "dashboards" / "grafana" / "cleanup.json"
DD_DASHBOARD = REPO / "dashboards" / "datadog" / "dashboard.json"
DD_PIPELINE = REPO / "dashboards" / "datadog" / "pipeline.json"
LOKI_RULES = REPO / "alerts" / "loki-rules.yaml"
PANEL_TYPES = {"timeseries", "table", "logs", "stat", "barchart"}
DD_WIDGETS = {"timeseries", "query_table", "list_stream", "query_value", "toplist", "note"}


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _datasource_variables(dashboard: dict[str, Any]) -> set[str]:
    return {
        f"${{{v['name']}}}"
        for v in dashboard["templating"]["list"]
        if v["type"] == "datasource" and v["query"] == "loki"
    }


def test_grafana_dashboard_has_identity_and_loki_variable() -> None:
    """A stable uid, a title, a schemaVersion and a `datasource` variable choosing a Loki source."""
    dashboard = _load(GRAFANA)
    assert dashboard["uid"] == "cleanup-retention"
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    assert _datasource_variables(dashboard) == {"${datasource}"}
    assert "id" not in dashboard, "an id pins the dashboard to one Grafana; import needs none"


def test_grafana_panels_query_loki_through_the_variable() -> None:
    """Every panel and query uses the `${datasource}` variable, never a fixed uid, and has a LogQL expr."""
    dashboard = _load(GRAFANA)
    variables = _datasource_variables(dashboard)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["datasource"] == {"type": "loki", "uid": "${datasource}"}
        assert panel["targets"], f"{panel['title']} has no query"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in variables
            logql.parse(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] in variables


def test_grafana_panels_fit_the_grid_without_overlap() -> None:
    """Panels lie within the 24-column grid and no two overlap."""
    panels = _load(GRAFANA)["panels"]
    boxes = []
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0
        boxes.append((panel["title"], grid))
    for (name_a, a), (name_b, b) in combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, f"{name_a} overlaps {name_b}"


def test_grafana_dashboard_has_the_issue_views() -> None:
    """Runs by status, items and bytes per target, duration, failures, a summary table, a warnings log panel."""
    panels = _load(GRAFANA)["panels"]
    by_query = {
        (panel["type"], str(logql.parse(t["expr"]).grouping), t["expr"])
        for panel in panels
        for t in panel["targets"]
    }

    def has(kind: str, *needles: str) -> bool:
        return any(k == kind and all(n in expr for n in needles) for k, _, expr in by_query)

    assert has("timeseries", "sum by (status, exit_code)", 'event="run_finished"')
    assert has("timeseries", "sum by (target)", "unwrap deleted")
    assert has("timeseries", "sum by (target)", "unwrap bytes_freed")
    assert has("timeseries", "by (target)", "unwrap duration_s")
    assert has("timeseries", 'status=~"failed|partial|capped"')
    assert has("table", 'event="run_finished"') and has("table", 'event="target_finished"')
    assert has("logs", 'level=~"WARNING|ERROR"')
    # Issue 10: exit codes, the capped preview's backlog, targets a preflight found not ready.
    assert has("timeseries", 'status="capped"', 'dry_run="true"', "unwrap backlog")
    assert has("logs", 'event="preflight"', 'ready="false"')
    assert has("logs", 'event="item_failed"', 'predicted="true"')
    assert has("timeseries", "sum by (event, code)", 'event=~"config_warning|target_warning"')


def test_datadog_dashboard_widgets_are_log_queries_with_formulas() -> None:
    """Each widget is a known type; timeseries formulas name their log queries; searches parse."""
    dashboard = _load(DD_DASHBOARD)
    assert dashboard["layout_type"] in ("ordered", "free") and dashboard["title"]
    assert dashboard["widgets"]
    for widget in dashboard["widgets"]:
        definition = widget["definition"]
        assert definition["type"] in DD_WIDGETS, definition
        for request in definition["requests"]:
            if definition["type"] == "list_stream":
                assert request["query"]["data_source"] == "logs_stream"
                datadog.parse_search(request["query"]["query_string"])
                continue
            names = {query["name"] for query in request["queries"]}
            assert {formula["formula"] for formula in request["formulas"]} <= names
            for query in request["queries"]:
                assert query["data_source"] == "logs" and query["indexes"]
                datadog.parse_search(query["search"]["query"])
                assert query["compute"]["aggregation"] in ("count", "sum", "max", "avg", "min")


def test_datadog_pipeline_processors_have_documented_keys() -> None:
    """The pipeline filters on the source and uses each processor with exactly its documented keys."""
    pipeline = _load(DD_PIPELINE)
    assert pipeline["is_enabled"] is True
    assert datadog.parse_search(pipeline["filter"]["query"]) == [
        datadog.Term("tag", "source", ("cleanup",))
    ]
    kinds = [p["type"] for p in pipeline["processors"]]
    assert kinds.index("status-remapper") < kinds.index("attribute-remapper")
    for processor in pipeline["processors"]:
        assert set(processor) == datadog.PROCESSOR_KEYS[processor["type"]], processor["name"]


def test_loki_rules_file_has_rule_group_shape() -> None:
    """alerts/loki-rules.yaml is a valid Prometheus-style rule group file, as the Loki ruler reads."""
    rules = yaml.safe_load(LOKI_RULES.read_text())
    jsonschema.validate(rules, PROMETHEUS_RULE_SCHEMA["properties"]["spec"])
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] and rule["annotations"]["summary"]
            logql.parse(rule["expr"])
