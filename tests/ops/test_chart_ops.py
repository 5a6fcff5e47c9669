"""The chart's Grafana dashboard ConfigMap and PrometheusRule, rendered by Helm 3 and 4.

kubernetes-validate has no schema for the PrometheusRule CRD, so its structure is
checked against a JSON schema written from prometheus-operator's CRD
(monitoring.coreos.com/v1, spec.groups[].rules[]), and every expression is parsed by
promql-parser; the metric and label names are checked against kube-state-metrics'
documented CronJob and Job metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import pytest

from tests.deploy.conftest import CHART, helm_template, run, tool, validate_all
from tests.ops.rules import PROMETHEUS_RULE_SCHEMA

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "grafana" / "cleanup.json"
CHART_DASHBOARD = CHART / "dashboards" / "grafana-cleanup.json"
ENABLED = ("alerts.enabled=true", "dashboards.grafana.enabled=true")
# kube-state-metrics docs/metrics/workload/{cronjob,job}-metrics.md: metric -> its labels.
KSM_METRICS: dict[str, set[str]] = {
    "kube_cronjob_status_last_successful_time": {"namespace", "cronjob"},
    "kube_cronjob_created": {"namespace", "cronjob"},
    "kube_cronjob_spec_suspend": {"namespace", "cronjob"},
    "kube_cronjob_status_last_schedule_time": {"namespace", "cronjob"},
    "kube_cronjob_next_schedule_time": {"namespace", "cronjob"},
    "kube_job_failed": {"namespace", "job_name", "condition"},
    "kube_job_status_failed": {"namespace", "job_name", "reason"},
    "kube_job_status_start_time": {"namespace", "job_name"},
    "kube_job_status_completion_time": {"namespace", "job_name"},
    "kube_job_owner": {"namespace", "job_name", "owner_kind", "owner_name", "owner_is_controller"},
}


def _rules(rule_object: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_object["spec"]["groups"] for r in g["rules"]}


def _selectors(expr: Any) -> Iterator[Any]:
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expr, visit)
    yield from found


def _thresholds(expr: Any) -> list[float]:
    found: list[float] = []

    def visit(node: Any) -> None:
        if (
            isinstance(node, promql_parser.BinaryExpr)
            and str(node.op) == ">"
            and isinstance(node.rhs, promql_parser.NumberLiteral)
        ):
            found.append(node.rhs.val)

    promql_parser.walk(expr, visit)
    return found


def test_chart_dashboard_copy_identical_to_source() -> None:
    """The chart's copy of the Grafana dashboard is byte-identical to dashboards/grafana/cleanup.json."""
    assert CHART_DASHBOARD.read_bytes() == DASHBOARD.read_bytes()


def test_chart_defaults_render_no_dashboard_or_rule(helm: str) -> None:
    """With default values the chart renders neither the dashboard ConfigMap nor a PrometheusRule."""
    rendered = helm_template(helm)
    assert rendered.of_kind("PrometheusRule") == []
    assert [c["metadata"]["name"] for c in rendered.of_kind("ConfigMap")] == ["rel-cleanup"]


def test_chart_grafana_dashboard_configmap_for_sidecar(helm: str) -> None:
    """dashboards.grafana.enabled renders a valid ConfigMap labelled grafana_dashboard "1" holding the dashboard."""
    rendered = helm_template(
        helm,
        sets=[
            "dashboards.grafana.enabled=true",
            "dashboards.grafana.namespace=monitoring",
            "dashboards.grafana.annotations.grafana_folder=Retention",
        ],
    )
    configmap = rendered.one("ConfigMap", "rel-cleanup-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Retention"}
    assert configmap["data"]["cleanup.json"] == DASHBOARD.read_text()
    validate_all([configmap])


def test_chart_prometheusrule_structure_and_promql_valid(helm: str) -> None:
    """alerts.enabled renders a PrometheusRule of the CRD's shape whose expressions parse as PromQL."""
    rendered = helm_template(helm, sets=ENABLED)
    rule = rendered.one("PrometheusRule")
    jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    validate_all([o for o in rendered.objects if o["kind"] != "PrometheusRule"])
    rules = _rules(rule)
    assert set(rules) == {"CleanupNoSuccessfulRun", "CleanupLastRunFailed", "CleanupSuspended"}
    cronjob = rendered.one("CronJob", "rel-cleanup")
    for name, alert in rules.items():
        expr = promql_parser.parse(alert["expr"])
        selectors = list(_selectors(expr))
        assert selectors, name
        for selector in selectors:
            assert selector.name in KSM_METRICS, f"{name}: {selector.name} is no KSM metric"
            labels = {m.name: m for m in selector.matchers.matchers}
            assert set(labels) <= KSM_METRICS[selector.name], (name, selector.name, set(labels))
            assert labels["namespace"].value == cronjob["metadata"]["namespace"] == "apps"
            if "cronjob" in labels:
                assert labels["cronjob"].value == cronjob["metadata"]["name"]
            if "job_name" in labels:
                # What the CronJob controller names its Jobs: <cronjob>-<scheduled minute>.
                pattern = labels["job_name"].value
                assert re.fullmatch(pattern, f"{cronjob['metadata']['name']}-29410000")
                assert not re.fullmatch(pattern, "rel-cleanup-dry-run-29410000")
                assert not re.fullmatch(pattern, "cleanup-manual-1764390000")


def test_chart_alert_thresholds_and_labels_from_values(helm: str) -> None:
    """Interval x missed runs, `for` durations, severities and labels all come from values."""
    rendered = helm_template(
        helm,
        sets=[
            *ENABLED,
            "alerts.scheduleIntervalSeconds=3600",
            "alerts.noSuccessfulRun.missedIntervals=3",
            "alerts.noSuccessfulRun.severity=page",
            "alerts.lastRunFailed.for=1h",
            "alerts.suspended.for=3d",
            "alerts.labels.release=kube-prometheus-stack",
            "alerts.ruleLabels.team=storage",
            "alerts.runbookUrl=https://runbooks.example/cleanup",
        ],
    )
    rule = rendered.one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = _rules(rule)
    missed = rules["CleanupNoSuccessfulRun"]
    assert _thresholds(promql_parser.parse(missed["expr"])) == [10800.0, 10800.0]
    assert missed["labels"] == {"severity": "page", "team": "storage"}
    assert rules["CleanupLastRunFailed"]["for"] == "1h"
    assert rules["CleanupSuspended"]["for"] == "3d"
    for alert in rules.values():
        assert alert["annotations"]["runbook_url"] == "https://runbooks.example/cleanup"
        assert alert["labels"]["team"] == "storage"


def test_chart_alert_can_be_disabled_one_by_one(helm: str) -> None:
    """Each alert's `enabled: false` leaves that alert, and only it, out."""
    for key, alert in (
        ("noSuccessfulRun", "CleanupNoSuccessfulRun"),
        ("lastRunFailed", "CleanupLastRunFailed"),
        ("suspended", "CleanupSuspended"),
    ):
        rendered = helm_template(helm, sets=[*ENABLED, f"alerts.{key}.enabled=false"])
        names = set(_rules(rendered.one("PrometheusRule")))
        assert alert not in names and len(names) == 2


@pytest.mark.parametrize(
    "bad",
    [
        "alerts.suspended.for=1 day",
        "alerts.noSuccessfulRun.missedIntervals=0",
        "alerts.scheduleIntervalSeconds=10",
        "alerts.unknown=1",
        "dashboards.grafana.unknown=1",
        "dashboards.grafana.enabled=yes",
    ],
)
def test_chart_schema_rejects_bad_ops_values(helm: str, bad: str) -> None:
    """values.schema.json refuses malformed alert and dashboard values."""
    argv = [tool(helm), "template", "rel", str(CHART), "--set", bad]
    if bad.endswith("=yes"):
        argv[-2:] = ["--set-string", bad]
    proc = run(argv, check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower(), proc.stderr


def test_chart_lint_strict_with_ops_enabled(helm: str) -> None:
    """`helm lint --strict` passes with the dashboard and the alerts enabled."""
    argv = [tool(helm), "lint", "--strict", str(CHART)]
    for item in ENABLED:
        argv += ["--set", item]
    run(argv)


def test_chart_last_run_failed_alert_explains_exit_codes(helm: str) -> None:
    """`CleanupLastRunFailed` says which exit codes fail the Job, and that 2 and 3 are not retried."""
    rule = _rules(helm_template(helm, sets=ENABLED).one("PrometheusRule"))["CleanupLastRunFailed"]
    description = " ".join(rule["annotations"]["description"].split())
    assert "exit 1, retried up to backoffLimit" in description
    assert "capped at max_deletions (exit 3" in description
    assert "2 and 3 fail the Job at once, never retried" in description
    assert "partial or capped (exit 1)" not in description
