"""The Helm chart, checked with real Helm 3 and Helm 4 and kubernetes-validate (docs/deployment.md)."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import (
    BAD_VALUES,
    CHART,
    REPO,
    VALUES,
    check_config,
    config_toml,
    container,
    env_map,
    helm_template,
    pod_spec,
    run,
    tool,
    validate_all,
)

# The values files of the documentation (examples/) are rendered and linted like the matrix.
MATRIX = sorted(VALUES.glob("*.yaml")) + sorted((REPO / "examples").glob("values-*.yaml"))
BAD = sorted(BAD_VALUES.glob("*.yaml"))
HARDENED_CONTAINER = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_chart_lint_strict_passes(helm: str) -> None:
    """`helm lint --strict` passes with the defaults and with every matrix values file."""
    run([tool(helm), "lint", "--strict", str(CHART)])
    for values in MATRIX:
        run([tool(helm), "lint", "--strict", str(CHART), "--values", str(values)])


@pytest.mark.parametrize("values", MATRIX, ids=_ids(MATRIX))
def test_chart_render_valid_for_two_kubernetes_versions(helm: str, values: Path) -> None:
    """Every object rendered from each matrix values file validates strictly on 1.30 and newest."""
    rendered = helm_template(helm, [values])
    kinds = {o["kind"] for o in rendered.objects}
    assert {"CronJob", "ConfigMap", "ServiceAccount"} <= kinds
    validate_all(rendered.objects)


@pytest.mark.parametrize("values", MATRIX, ids=_ids(MATRIX))
def test_chart_config_toml_passes_check_config(helm: str, values: Path, tmp_path: Path) -> None:
    """The config.toml rendered into the ConfigMap is accepted by `cleanup --check-config`."""
    rendered = helm_template(helm, [values])
    proc = check_config(config_toml(rendered.one("ConfigMap")), tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    effective = json.loads(proc.stdout)
    config = yaml.safe_load(values.read_text())["config"]
    for kind in ("volumes", "s3", "postgres"):
        assert [t["name"] for t in effective[kind]] == [t["name"] for t in config.get(kind, [])]


def test_chart_config_toml_round_trips_every_value(helm: str, tmp_path: Path) -> None:
    """Quotes, backslashes, unicode, lists, integers and booleans reach cleanup unchanged."""
    values = VALUES / "all-features.yaml"
    config = yaml.safe_load(values.read_text())["config"]
    rendered = helm_template(helm, [values])
    proc = check_config(config_toml(rendered.one("ConfigMap")), tmp_path)
    assert proc.returncode == 0, proc.stderr
    effective = json.loads(proc.stdout)
    assert effective["max_deletions"] == config["max_deletions"]
    assert effective["progress_interval"] == "1m"
    for kind in ("volumes", "s3", "postgres"):
        for given, got in zip(config[kind], effective[kind], strict=True):
            for key, value in given.items():
                if key != "max_age":
                    assert got[key] == value, (kind, key)
    temp = effective["volumes"][0]
    assert temp["max_age_seconds"] == 36 * 3600
    # A bare integer global max_age means days, and is inherited by targets without one.
    assert effective["volumes"][1]["max_age_seconds"] == 14 * 86400


@pytest.mark.parametrize("values", BAD, ids=_ids(BAD))
def test_chart_bad_values_rejected_by_schema(helm: str, values: Path) -> None:
    """Each bad values file fails `helm template` with a schema error naming the bad key."""
    first = values.read_text().splitlines()[0]
    match = re.fullmatch(r"# rejected at: (\S+)", first)
    assert match, f"{values.name}: first line must be '# rejected at: <key>'"
    proc = run(
        [tool(helm), "template", "rel", str(CHART), "--values", str(values)],
        check=False,
    )
    assert proc.returncode != 0, f"{values.name} was accepted"
    assert "schema" in proc.stderr, proc.stderr
    assert match.group(1) in proc.stderr, proc.stderr


def test_chart_cronjob_named_release_dash_cleanup(helm: str) -> None:
    """The CronJob is `<release>-cleanup`, also for a release called "cleanup" (docs/operations.md#manual-and-dry-runs)."""
    for release in ("prod", "cleanup"):
        rendered = helm_template(helm, [VALUES / "minimal.yaml"], release=release)
        assert [c["metadata"]["name"] for c in rendered.of_kind("CronJob")] == [
            f"{release}-cleanup"
        ]


def test_chart_long_release_names_fit_cronjob_limit(helm: str) -> None:
    """With the longest release name Helm allows, both CronJob names stay within 52 characters."""
    release = "a" * 53
    rendered = helm_template(helm, [VALUES / "dry-run.yaml"], release=release)
    names = sorted(c["metadata"]["name"] for c in rendered.of_kind("CronJob"))
    assert len(names) == 2
    assert all(len(n) <= 52 for n in names), names
    assert len(set(names)) == 2
    assert any(n.endswith("-dry-run") for n in names)


def test_chart_fullname_override_names_every_object(helm: str) -> None:
    """fullnameOverride names the CronJob, its dry-run twin, ConfigMap and ServiceAccount."""
    rendered = helm_template(helm, [VALUES / "dry-run.yaml"], sets=["fullnameOverride=media"])
    assert sorted(c["metadata"]["name"] for c in rendered.of_kind("CronJob")) == [
        "media",
        "media-dry-run",
    ]
    assert rendered.one("ConfigMap")["metadata"]["name"] == "media"
    assert rendered.one("ServiceAccount")["metadata"]["name"] == "media"


def test_chart_defaults_are_hardened(helm: str) -> None:
    """By default the pod runs as 10001, read-only, no capabilities, no token, /tmp writable."""
    cronjob = helm_template(helm, [VALUES / "minimal.yaml"]).one("CronJob")
    spec = pod_spec(cronjob)
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    pod_ctx = spec["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True
    assert (pod_ctx["runAsUser"], pod_ctx["runAsGroup"]) == (10001, 10001)
    assert pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(cronjob)["securityContext"]
    assert {k: ctx[k] for k in HARDENED_CONTAINER} == HARDENED_CONTAINER
    mounts = {m["mountPath"]: m for m in container(cronjob)["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_chart_cronjob_schedule_policy_defaults(helm: str) -> None:
    """Defaults: Forbid, a starting deadline, history limits, backoff and an active deadline."""
    spec = helm_template(helm, [VALUES / "minimal.yaml"]).one("CronJob")["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["suspend"] is False
    assert spec["startingDeadlineSeconds"] == 600
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 3)
    job = spec["jobTemplate"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (2, 3600)
    assert "ttlSecondsAfterFinished" not in job
    assert "timeZone" not in spec


def test_chart_schedule_values_reach_cronjob(helm: str) -> None:
    """Schedule, time zone, suspend, policies, limits and TTL come from values."""
    spec = helm_template(helm, [VALUES / "all-features.yaml"]).one("CronJob", "media-retention")[
        "spec"
    ]
    assert spec["schedule"] == "*/30 * * * *"
    assert spec["timeZone"] == "Europe/Berlin"
    assert spec["suspend"] is True
    assert spec["concurrencyPolicy"] == "Replace"
    assert spec["startingDeadlineSeconds"] == 300
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (5, 7)
    job = spec["jobTemplate"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (4, 7200)
    assert job["ttlSecondsAfterFinished"] == 172800


def test_chart_config_mounted_at_image_default_path(helm: str) -> None:
    """The ConfigMap's config.toml is mounted read-only at /etc/cleanup/config.toml."""
    rendered = helm_template(helm, [VALUES / "minimal.yaml"])
    cronjob = rendered.one("CronJob")
    mount = next(m for m in container(cronjob)["volumeMounts"] if m["mountPath"] == "/etc/cleanup")
    assert mount["readOnly"] is True
    volume = next(v for v in pod_spec(cronjob)["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == rendered.one("ConfigMap")["metadata"]["name"]
    assert volume["configMap"]["items"] == [{"key": "config.toml", "path": "config.toml"}]
    assert env_map(cronjob)["CLEANUP_CONFIG"]["value"] == "/etc/cleanup/config.toml"


def test_chart_config_checksum_follows_config(helm: str) -> None:
    """The checksum/config pod annotation changes when, and only when, the config changes."""

    def checksum(*sets: str) -> str:
        cronjob = helm_template(helm, [VALUES / "minimal.yaml"], sets=sets).one("CronJob")
        value: str = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]
        return value

    base = checksum()
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum("schedule=0 1 * * *") == base
    assert checksum("config.max_age=3d") != base


def test_chart_downward_api_env(helm: str) -> None:
    """POD_NAME, POD_NAMESPACE and JOB_NAME (from the job-name label) come from the downward API."""
    env = env_map(helm_template(helm, [VALUES / "minimal.yaml"]).one("CronJob"))
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert (
        env["JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.labels['batch.kubernetes.io/job-name']"
    )


def test_chart_dsn_from_existing_secret(helm: str) -> None:
    """With existingSecret, CLEANUP_DATABASE_URL reads its key and the chart makes no Secret."""
    rendered = helm_template(helm, [VALUES / "existing-secret.yaml"])
    assert rendered.of_kind("Secret") == []
    env = env_map(rendered.one("CronJob"))
    assert env["CLEANUP_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "app-database",
        "key": "DATABASE_URL",
    }


def test_chart_dsn_chart_secret_for_each_dsn_env(helm: str) -> None:
    """A chart-made Secret holds the DSN, exposed under every postgres target's dsn_env."""
    rendered = helm_template(helm, [VALUES / "all-features.yaml"])
    secret = rendered.one("Secret")
    dsn = base64.b64decode(secret["data"]["url"]).decode()
    assert dsn == "postgresql://cleanup:s3cr3t@db.example.com:5432/app?sslmode=require"
    env = env_map(rendered.one("CronJob", "media-retention"))
    for name in ("CLEANUP_DATABASE_URL", "AUDIT_DATABASE_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {
            "name": secret["metadata"]["name"],
            "key": "url",
        }
    # The DSN never lands in the ConfigMap.
    assert "s3cr3t" not in json.dumps(rendered.one("ConfigMap"))


def test_chart_no_dsn_env_without_postgres_or_secret(helm: str) -> None:
    """Without a DSN source the chart adds no DSN env var and no Secret."""
    rendered = helm_template(helm, [VALUES / "minimal.yaml"])
    assert rendered.of_kind("Secret") == []
    assert "CLEANUP_DATABASE_URL" not in env_map(rendered.one("CronJob"))


def test_chart_service_account_annotations_for_irsa(helm: str) -> None:
    """IRSA / workload-identity annotations land on the ServiceAccount the pod runs as."""
    rendered = helm_template(helm, [VALUES / "irsa.yaml"])
    account = rendered.one("ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/cleanup-s3",
        "iam.gke.io/gcp-service-account": "cleanup@project.iam.gserviceaccount.com",
    }
    assert account["automountServiceAccountToken"] is False
    assert pod_spec(rendered.one("CronJob"))["serviceAccountName"] == account["metadata"]["name"]


def test_chart_all_features_reach_pod_spec(helm: str) -> None:
    """PVC mounts, extra env/envFrom/args, scheduling, pull secrets and resources are rendered."""
    values: dict[str, Any] = yaml.safe_load((VALUES / "all-features.yaml").read_text())
    cronjob = helm_template(helm, [VALUES / "all-features.yaml"]).one("CronJob", "media-retention")
    spec, main = pod_spec(cronjob), container(cronjob)
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"data": "app-data", "archive": "archive"}
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["data"]["mountPath"] == "/data"
    assert mounts["archive"] == {
        "name": "archive",
        "mountPath": "/archive",
        "subPath": "cleanup",
        "readOnly": True,
    }
    assert mounts["scratch"]["mountPath"] == "/scratch"
    assert main["image"] == f"{values['image']['repository']}@{values['image']['digest']}"
    assert main["imagePullPolicy"] == "Always"
    assert main["args"] == ["--log-level", "DEBUG"]
    assert main["envFrom"] == values["envFrom"]
    assert env_map(cronjob)["CLEANUP_MAX_DELETIONS"]["value"] == "50000"
    assert main["resources"] == values["resources"]
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets", "priorityClassName"):
        assert spec[key] == values[key], key
    assert spec["terminationGracePeriodSeconds"] == 120
    assert spec["securityContext"]["fsGroup"] == 10001
    assert spec["serviceAccountName"] == "media-retention-sa"
    labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["cost-center"] == "42"
    rules = cronjob["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert [r["action"] for r in rules] == ["FailJob"]


def test_chart_dry_run_twin_is_suspended_and_dry(helm: str) -> None:
    """dryRun.enabled adds a suspended `<release>-cleanup-dry-run` with CLEANUP_DRY_RUN=true."""
    rendered = helm_template(helm, [VALUES / "dry-run.yaml"], release="prod")
    main = rendered.one("CronJob", "prod-cleanup")
    twin = rendered.one("CronJob", "prod-cleanup-dry-run")
    assert twin["spec"]["suspend"] is True
    assert main["spec"]["suspend"] is False
    twin_env = env_map(twin)
    assert twin_env["CLEANUP_DRY_RUN"] == {"name": "CLEANUP_DRY_RUN", "value": "true"}
    assert container(twin)["args"] == ["--dry-run"]
    # Same config, image and mounts as the real job (only read-only: see
    # test_chart_trust.py): the preview shows what it would do.
    assert [v["name"] for v in pod_spec(twin)["volumes"]] == [
        v["name"] for v in pod_spec(main)["volumes"]
    ]
    assert [(m["name"], m["mountPath"]) for m in container(twin)["volumeMounts"]] == [
        (m["name"], m["mountPath"]) for m in container(main)["volumeMounts"]
    ]
    assert container(twin)["image"] == container(main)["image"]
    # The main job keeps what the values say (here an explicit "false").
    assert env_map(main)["CLEANUP_DRY_RUN"]["value"] == "false"
    assert "args" not in container(main)


def test_chart_no_dry_run_twin_by_default(helm: str) -> None:
    """Without dryRun.enabled only the main CronJob is rendered."""
    rendered = helm_template(helm, [VALUES / "minimal.yaml"])
    assert len(rendered.of_kind("CronJob")) == 1


def _notes(helm: str, values: Path, tmp_path: Path, sets: Sequence[str] = ()) -> str:
    """NOTES.txt as rendered for release "prod" in namespace "apps"."""
    common = ["--namespace", "apps", "--values", str(values)]
    for item in sets:
        common += ["--set", item]
    if helm == "helm4":
        proc = run([tool(helm), "install", "prod", str(CHART), "--dry-run=client", *common])
        return proc.stdout.split("NOTES:", 1)[1]
    # Helm 3 contacts the cluster even with --dry-run=client (helm/helm#13144), so
    # render the same NOTES.txt text from a chart copy as a template's string value.
    chart = tmp_path / "cleanup"
    shutil.copytree(CHART, chart)
    notes = chart / "templates" / "NOTES.txt"
    wrapper = chart / "templates" / "zz-notes.yaml"
    wrapper.write_text(
        '{{- define "test.notes" }}' + notes.read_text() + "{{- end }}\n"
        'notes: {{ include "test.notes" . | toJson }}\n'
    )
    notes.unlink()
    proc = run(
        [
            tool(helm),
            "template",
            "prod",
            str(chart),
            "--show-only",
            "templates/zz-notes.yaml",
            *common,
        ]
    )
    text: str = yaml.safe_load(proc.stdout)["notes"]
    return text


def test_chart_notes_show_manual_and_dry_run_commands(helm: str, tmp_path: Path) -> None:
    """NOTES.txt shows `helm test`, the manual-run and dry-run commands, and the exit codes."""
    notes = _notes(helm, VALUES / "dry-run.yaml", tmp_path)
    assert "kubectl -n apps create job --from=cronjob/prod-cleanup cleanup-manual-" in notes
    assert "kubectl -n apps create job --from=cronjob/prod-cleanup-dry-run " in notes
    assert "kubectl -n apps logs job/" in notes
    # The preflight check next to the manual run, and what the exit codes mean.
    assert "helm test prod -n apps --logs" in notes
    assert notes.index("helm test prod") < notes.index("cleanup-manual-")
    assert "3 a target was capped" in notes
    assert "2 and 3 fail the Job at once" in notes
    without_test = _notes(
        helm, VALUES / "minimal.yaml", tmp_path / "no-test", ["test.enabled=false"]
    )
    assert "helm test" not in without_test
    without_twin = _notes(helm, VALUES / "minimal.yaml", tmp_path / "minimal")
    assert "--from=cronjob/prod-cleanup-dry-run" not in without_twin


def test_chart_every_value_documented() -> None:
    """Every leaf key in values.yaml has a `# --` helm-docs comment above it or its parent."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z_][\w.]*):", line)
        if not match or line.lstrip().startswith("-"):
            continue
        indent = len(match.group(1))
        # Parent keys (a mapping follows) document their children instead.
        nxt = next((ln for ln in lines[index + 1 :] if ln.strip()), "")
        is_parent = line.rstrip().endswith(":") and len(nxt) - len(nxt.lstrip()) > indent
        previous = lines[index - 1].strip() if index else ""
        documented = previous.startswith("# --") or previous.startswith("# @default")
        if not is_parent and not documented and not _documented_parent(lines, index, indent):
            undocumented.append(match.group(2))
    assert undocumented == []


def _documented_parent(lines: list[str], index: int, indent: int) -> bool:
    """True when an enclosing key is itself documented as a whole (e.g. securityContext)."""
    for back in range(index - 1, -1, -1):
        line = lines[back]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parent_indent = len(line) - len(line.lstrip())
        if parent_indent < indent:
            above = lines[back - 1].strip() if back else ""
            if above.startswith("# --"):
                return True
            indent = parent_indent
            if indent == 0:
                return False
    return False


@pytest.mark.parametrize(
    "mount_path", ["/dat", "/data/other", "/var/data"], ids=["prefix", "sibling", "elsewhere"]
)
def test_chart_volume_target_outside_mounts_fails_render(helm: str, mount_path: str) -> None:
    """A volume target whose path is in no mounted volume is refused at render time."""
    proc = run(
        [
            tool(helm),
            "template",
            "rel",
            str(CHART),
            "--values",
            str(VALUES / "minimal.yaml"),
            "--set",
            f"mounts[0].mountPath={mount_path}",
        ],
        check=False,
    )
    assert proc.returncode != 0
    assert 'config.volumes "temp": path "/data/temp" is not inside any' in proc.stderr


@pytest.mark.parametrize("mount_path", ["/data", "/data/", "/data/temp"])
def test_chart_volume_target_inside_mount_renders(helm: str, mount_path: str) -> None:
    """A volume target at or below a mount path renders (trailing slashes ignored)."""
    rendered = helm_template(
        helm, [VALUES / "minimal.yaml"], sets=[f"mounts[0].mountPath={mount_path}"]
    )
    assert rendered.one("CronJob")


def test_chart_dsn_exposed_for_quick_postgres_target(helm: str) -> None:
    """With a DSN Secret but no postgres targets in config, CLEANUP_DATABASE_URL is still set."""
    rendered = helm_template(
        helm,
        [VALUES / "minimal.yaml"],
        sets=[
            "database.existingSecret=db",
            "extraEnv[0].name=CLEANUP_PG_TABLE",
            "extraEnv[0].value=jobs",
        ],
    )
    env = env_map(rendered.one("CronJob"))
    assert env["CLEANUP_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "dsn"}
