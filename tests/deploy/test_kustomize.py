"""The kustomize manifests under k8s/, built with the real `kubectl kustomize` (docs/deployment.md#kustomize)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    K8S,
    VALUES,
    Rendered,
    check_config,
    config_toml,
    container,
    env_map,
    helm_template,
    load_docs,
    pod_spec,
    run,
    tool,
    validate_all,
)

BUILDS = {"k8s": K8S, "base": K8S / "base", "example-overlay": K8S / "overlays" / "example"}


def kustomize(path: Path) -> Rendered:
    return Rendered(load_docs(run([tool("kubectl"), "kustomize", str(path)]).stdout))


@pytest.mark.parametrize("path", BUILDS.values(), ids=BUILDS.keys())
def test_kustomize_output_valid_for_two_kubernetes_versions(path: Path) -> None:
    """`kubectl kustomize` output validates strictly on Kubernetes 1.30 and the newest schema."""
    rendered = kustomize(path)
    assert sorted(o["kind"] for o in rendered.objects) == ["ConfigMap", "CronJob", "ServiceAccount"]
    validate_all(rendered.objects)


@pytest.mark.parametrize("path", BUILDS.values(), ids=BUILDS.keys())
def test_kustomize_config_toml_passes_check_config(path: Path, tmp_path: Path) -> None:
    """The generated ConfigMap's config.toml is accepted by `cleanup --check-config`."""
    proc = check_config(config_toml(kustomize(path).one("ConfigMap")), tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert json.loads(proc.stdout)["targets"]


def test_kustomize_k8s_root_builds_the_base() -> None:
    """`kubectl apply -k k8s/` (the documented path) applies exactly the base objects."""
    assert kustomize(K8S).objects == kustomize(K8S / "base").objects


def test_kustomize_config_map_reference_follows_hash() -> None:
    """The CronJob mounts the generated, hash-suffixed ConfigMap at /etc/cleanup."""
    for path in BUILDS.values():
        rendered = kustomize(path)
        name = rendered.one("ConfigMap")["metadata"]["name"]
        volumes = {v["name"]: v for v in pod_spec(rendered.one("CronJob"))["volumes"]}
        assert volumes["config"]["configMap"]["name"] == name
        mounts = {
            m["name"]: m["mountPath"] for m in container(rendered.one("CronJob"))["volumeMounts"]
        }
        assert mounts["config"] == "/etc/cleanup"


def test_kustomize_base_matches_chart_defaults() -> None:
    """The base CronJob has the chart's hardening, policies and env: both deploy the same job."""
    chart = helm_template("helm4", [VALUES / "minimal.yaml"]).one("CronJob")
    base = kustomize(K8S / "base").one("CronJob")
    for key in ("concurrencyPolicy", "startingDeadlineSeconds", "successfulJobsHistoryLimit"):
        assert base["spec"][key] == chart["spec"][key], key
    for key in ("backoffLimit", "activeDeadlineSeconds", "podFailurePolicy"):
        assert base["spec"]["jobTemplate"]["spec"][key] == chart["spec"]["jobTemplate"]["spec"][key]
    for key in ("securityContext", "restartPolicy", "automountServiceAccountToken"):
        assert pod_spec(base)[key] == pod_spec(chart)[key], key
    assert container(base)["securityContext"] == container(chart)["securityContext"]
    assert container(base)["resources"] == container(chart)["resources"]
    assert env_map(base) == env_map(chart)
    account = kustomize(K8S / "base").one("ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_kustomize_overlay_sets_namespace_image_secret_and_irsa() -> None:
    """The example overlay's namespace, image, DSN Secret, PVC and IRSA annotation apply."""
    rendered = kustomize(K8S / "overlays" / "example")
    assert {o["metadata"]["namespace"] for o in rendered.objects} == {"media"}
    cronjob = rendered.one("CronJob", "media-cleanup")
    assert container(cronjob)["image"] == "registry.example.com/platform/cleanup:0.1.0"
    assert env_map(cronjob)["CLEANUP_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "media-database",
        "key": "DATABASE_URL",
    }
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(cronjob)["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["media-data"]
    account = rendered.one("ServiceAccount", "media-cleanup")
    assert pod_spec(cronjob)["serviceAccountName"] == "media-cleanup"
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]


@pytest.mark.parametrize("path", BUILDS.values(), ids=BUILDS.keys())
def test_kustomize_pod_failure_policy_fails_job_on_exit_2_and_3(path: Path) -> None:
    """Every build fails the Job at once on exit 2 (configuration) and 3 (capped): never retried."""
    cronjob = kustomize(path).one("CronJob")
    rules = cronjob["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {
            "containerName": container(cronjob)["name"],
            "operator": "In",
            "values": [2, 3],
        },
    }
    assert rules[1] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
