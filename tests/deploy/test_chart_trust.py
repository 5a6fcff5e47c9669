"""The chart's brakes (issue 10, docs/deployment.md), checked with real Helm 3 and Helm 4.

A capped run (exit 3) and a bad configuration (exit 2) fail the Job at once; the
dry-run twin mounts every volume read-only; a postgres target without a DSN source
fails to render; `helm test` runs `cleanup --preflight` in the CronJob's own pod spec.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import (
    CHART,
    VALUES,
    Rendered,
    container,
    helm_template,
    pod_spec,
    run,
    tool,
    validate_all,
)

FAIL_JOB_RULE = {
    "action": "FailJob",
    "onExitCodes": {"containerName": "cleanup", "operator": "In", "values": [2, 3]},
}
DISRUPTION_RULE = {
    "action": "Ignore",
    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
}
PG_TARGET = ["config.postgres[0].name=jobs", "config.postgres[0].table=jobs"]


def _writable_values(tmp_path: Path) -> Path:
    """all-features.yaml, with every mount the values can make writable asking to be writable."""
    values = yaml.safe_load((VALUES / "all-features.yaml").read_text())
    values["mounts"][0]["readOnly"] = False  # "data"; "archive" stays readOnly: true
    values["extraVolumes"].append(
        {"name": "nfs", "nfs": {"server": "nfs.example", "path": "/exports/media"}}
    )
    values["extraVolumeMounts"][0]["readOnly"] = False  # "scratch"
    values["extraVolumeMounts"].append({"name": "nfs", "mountPath": "/nfs", "readOnly": False})
    path = tmp_path / "writable.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _job_spec(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]
    return spec


def _template(helm: str, sets: list[str], values: Path = VALUES / "minimal.yaml") -> Any:
    """`helm template` with --set values; returns the process (it may fail)."""
    argv = [tool(helm), "template", "rel", str(CHART), "--values", str(values)]
    for item in sets:
        argv += ["--set", item]
    return run(argv, check=False)


def _preflight_pod(rendered: Rendered) -> dict[str, Any]:
    pods = [p for p in rendered.of_kind("Pod") if p["metadata"]["name"].endswith("-preflight")]
    assert len(pods) == 1, [p["metadata"]["name"] for p in rendered.of_kind("Pod")]
    return pods[0]


def _only_container(spec: dict[str, Any]) -> dict[str, Any]:
    assert len(spec["containers"]) == 1
    only: dict[str, Any] = spec["containers"][0]
    return only


# --- exit 3 (and 2) fail the Job at once --------------------------------------------------


def test_chart_pod_failure_policy_fails_job_on_exit_2_and_3(helm: str) -> None:
    """CronJob and dry-run twin: FailJob on exit 2 or 3 of `cleanup`, then Ignore disruptions."""
    rendered = helm_template(helm, [VALUES / "dry-run.yaml"], release="prod")
    cronjobs = rendered.of_kind("CronJob")
    assert sorted(c["metadata"]["name"] for c in cronjobs) == [
        "prod-cleanup",
        "prod-cleanup-dry-run",
    ]
    for cronjob in cronjobs:
        rules = _job_spec(cronjob)["podFailurePolicy"]["rules"]
        assert rules == [FAIL_JOB_RULE, DISRUPTION_RULE], cronjob["metadata"]["name"]
        assert FAIL_JOB_RULE["onExitCodes"]["containerName"] == container(cronjob)["name"]


def test_chart_cap_not_retried_whatever_backoff_limit(helm: str) -> None:
    """With a large backoffLimit and no disruption rule, exit 3 still fails the Job at once."""
    rendered = helm_template(
        helm,
        [VALUES / "dry-run.yaml"],
        sets=["backoffLimit=6", "podFailurePolicy.ignoreDisruptions=false"],
    )
    for cronjob in rendered.of_kind("CronJob"):
        spec = _job_spec(cronjob)
        assert spec["backoffLimit"] == 6
        assert spec["podFailurePolicy"]["rules"] == [FAIL_JOB_RULE]


# --- the dry-run twin mounts every volume read-only ---------------------------------------


@pytest.mark.parametrize("writable", [False, True], ids=["all-features", "writable-values"])
def test_chart_dry_run_twin_mounts_every_volume_read_only(
    helm: str, writable: bool, tmp_path: Path
) -> None:
    """Every data mount of the twin is readOnly, each PVC source too, whatever the values say."""
    values = _writable_values(tmp_path) if writable else VALUES / "all-features.yaml"
    rendered = helm_template(helm, [values])
    twin = rendered.one("CronJob", "media-retention-dry-run")
    mounts = container(twin)["volumeMounts"]
    data = [m for m in mounts if m["mountPath"] not in ("/tmp", "/etc/cleanup")]
    expected = {"/data", "/archive", "/scratch"} | ({"/nfs"} if writable else set())
    assert {m["mountPath"] for m in data} == expected
    assert [m["mountPath"] for m in data if m.get("readOnly") is not True] == []
    claims = [v for v in pod_spec(twin)["volumes"] if "persistentVolumeClaim" in v]
    assert {v["name"] for v in claims} == {"data", "archive"}
    assert [
        v["name"] for v in claims if v["persistentVolumeClaim"].get("readOnly") is not True
    ] == []
    # The config is read-only anyway; /tmp is the process's scratch emptyDir, never data.
    by_path = {m["mountPath"]: m for m in mounts}
    assert by_path["/etc/cleanup"]["readOnly"] is True
    tmp = next(v for v in pod_spec(twin)["volumes"] if v["name"] == by_path["/tmp"]["name"])
    assert "emptyDir" in tmp
    validate_all(rendered.objects)


def test_chart_read_only_twin_leaves_main_job_writable(helm: str, tmp_path: Path) -> None:
    """The twin's read-only mounts do not leak into the main CronJob of the same values."""
    rendered = helm_template(helm, [_writable_values(tmp_path)])
    main = rendered.one("CronJob", "media-retention")
    mounts = {m["mountPath"]: m for m in container(main)["volumeMounts"]}
    assert mounts["/data"].get("readOnly", False) is False
    assert mounts["/nfs"].get("readOnly") is False
    assert mounts["/scratch"].get("readOnly", False) is False
    assert mounts["/archive"]["readOnly"] is True  # what the values ask for
    claims = {
        v["name"]: v["persistentVolumeClaim"]
        for v in pod_spec(main)["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims["data"].get("readOnly", False) is False


# --- a postgres target needs a DSN source ------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "variable"),
    [
        (PG_TARGET, "CLEANUP_DATABASE_URL"),
        ([*PG_TARGET, "config.postgres[0].dsn_env=JOBS_URL"], "JOBS_URL"),
        # An env var, but not the one this target reads, or one left empty.
        (
            [
                *PG_TARGET,
                "config.postgres[0].dsn_env=JOBS_URL",
                "extraEnv[0].name=CLEANUP_DATABASE_URL",
                "extraEnv[0].value=postgresql://db/app",
            ],
            "JOBS_URL",
        ),
        ([*PG_TARGET, "extraEnv[0].name=CLEANUP_DATABASE_URL", "extraEnv[0].value="], None),
        (["extraEnv[0].name=CLEANUP_PG_TABLE", "extraEnv[0].value=jobs"], "CLEANUP_DATABASE_URL"),
    ],
    ids=["default-dsn-env", "own-dsn-env", "other-env-var", "empty-env-var", "quick-target"],
)
def test_chart_postgres_target_without_dsn_source_fails_render(
    helm: str, sets: list[str], variable: str | None
) -> None:
    """A postgres target without a DSN source fails the render, naming the values to set."""
    proc = _template(helm, sets)
    assert proc.returncode != 0, proc.stdout
    assert "has no DSN source" in proc.stderr, proc.stderr
    assert "set database.existingSecret" in proc.stderr
    assert "(recommended" in proc.stderr
    assert "database.dsn" in proc.stderr
    assert (variable or "CLEANUP_DATABASE_URL") in proc.stderr
    assert "schema" not in proc.stderr.lower()


@pytest.mark.parametrize(
    "source",
    [
        ["database.existingSecret=app-db"],
        ["database.dsn=postgresql://cleanup:pw@db/app"],
        [
            "extraEnv[0].name=CLEANUP_DATABASE_URL",
            "extraEnv[0].valueFrom.secretKeyRef.name=app-db",
            "extraEnv[0].valueFrom.secretKeyRef.key=url",
        ],
        ["extraEnv[0].name=PGHOST", "extraEnv[0].value=db.example"],
        ["envFrom[0].secretRef.name=app-db"],
    ],
    ids=["existing-secret", "chart-secret", "extra-env", "libpq-env", "env-from"],
)
def test_chart_postgres_target_with_a_dsn_source_renders(helm: str, source: list[str]) -> None:
    """Each DSN source (existing or chart Secret, env var, libpq env, envFrom) renders validly."""
    proc = _template(helm, [*PG_TARGET, *source])
    assert proc.returncode == 0, proc.stderr
    rendered = Rendered([d for d in yaml.safe_load_all(proc.stdout) if d])
    assert rendered.one("CronJob")
    validate_all(rendered.objects)


def test_chart_without_postgres_target_needs_no_dsn(helm: str) -> None:
    """Volume and S3 targets alone render without any DSN source."""
    for values in ("minimal.yaml", "irsa.yaml"):
        assert helm_template(helm, [VALUES / values]).one("CronJob")


# --- helm test runs cleanup --preflight in the CronJob's pod spec ---------------------------


@pytest.mark.parametrize("values", ["all-features.yaml", "minimal.yaml", "existing-secret.yaml"])
def test_chart_helm_test_pod_runs_preflight_with_the_jobs_pod_spec(helm: str, values: str) -> None:
    """The test hook Pod is valid and is the CronJob's pod spec, plus `--preflight` in its args."""
    rendered = helm_template(helm, [VALUES / values])
    pod = _preflight_pod(rendered)
    validate_all([pod])
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    cronjob = next(
        c for c in rendered.of_kind("CronJob") if not c["metadata"]["name"].endswith("-dry-run")
    )
    spec, job_spec = pod["spec"], pod_spec(cronjob)
    assert spec["restartPolicy"] == "Never"
    test_container, job_container = _only_container(spec), container(cronjob)
    assert test_container["args"] == [*job_container.get("args", []), "--preflight"]
    assert "--dry-run" not in test_container["args"]
    # Everything else is the job's: config, identity, env and DSN, mounts (read-write),
    # image, security contexts, resources and scheduling.
    for key in (
        "env",
        "envFrom",
        "volumeMounts",
        "image",
        "imagePullPolicy",
        "securityContext",
        "resources",
    ):
        assert test_container.get(key) == job_container.get(key), key
    same_pod = copy.deepcopy(spec)
    same_job = copy.deepcopy(job_spec)
    for either in (same_pod, same_job):
        either["containers"][0].pop("args", None)
    assert same_pod == same_job
    assert spec["serviceAccountName"] == rendered.one("ServiceAccount")["metadata"]["name"]
    assert pod["metadata"]["namespace"] == cronjob["metadata"]["namespace"]


def test_chart_helm_test_pod_mounts_like_the_real_job_not_the_twin(
    helm: str, tmp_path: Path
) -> None:
    """Beside the read-only twin, the preflight pod mounts data read-write (it checks that)."""
    rendered = helm_template(helm, [_writable_values(tmp_path)])
    pod = _preflight_pod(rendered)
    mounts = {m["mountPath"]: m for m in _only_container(pod["spec"])["volumeMounts"]}
    assert mounts["/data"].get("readOnly", False) is False
    assert mounts["/nfs"].get("readOnly") is False


def test_chart_helm_test_pod_can_be_disabled_and_policy_set(helm: str) -> None:
    """test.enabled=false renders no test Pod; test.hookDeletePolicy reaches its annotation."""
    assert (
        helm_template(helm, [VALUES / "minimal.yaml"], sets=["test.enabled=false"]).of_kind("Pod")
        == []
    )
    pod = _preflight_pod(
        helm_template(
            helm,
            [VALUES / "minimal.yaml"],
            sets=["test.hookDeletePolicy=before-hook-creation\\,hook-succeeded"],
        )
    )
    assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == (
        "before-hook-creation,hook-succeeded"
    )


def test_chart_helm_test_pod_is_a_test_hook_for_helm(helm: str) -> None:
    """Helm treats the Pod as a test hook: `--skip-tests` leaves it out, and nothing else."""
    argv = [tool(helm), "template", "rel", str(CHART), "--values", str(VALUES / "minimal.yaml")]
    with_tests = Rendered([d for d in yaml.safe_load_all(run(argv).stdout) if d])
    without = Rendered([d for d in yaml.safe_load_all(run([*argv, "--skip-tests"]).stdout) if d])
    assert _preflight_pod(with_tests)["metadata"]["name"] == "rel-cleanup-preflight"
    assert without.of_kind("Pod") == []
    assert [o for o in with_tests.objects if o["kind"] != "Pod"] == without.objects
