{{/*
Expand the name of the chart.
*/}}
{{- define "cleanup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, also the main CronJob's name.
Unlike the scaffold, the release name is always followed by the chart name
(`<release>-cleanup`, even for a release called "cleanup"), because the
documented manual run is `kubectl create job --from=cronjob/<release>-cleanup`.
Truncated to 52 characters: a CronJob's name may not be longer, since the
controller appends an 11-character suffix to the Jobs it creates.
*/}}
{{- define "cleanup.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "cleanup.name" .) | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Name of the suspended dry-run twin: the full name plus "-dry-run", within 52 characters.
*/}}
{{- define "cleanup.dryRunName" -}}
{{- printf "%s-dry-run" (include "cleanup.fullname" . | trunc 44 | trimSuffix "-") }}
{{- end }}

{{/*
Name of the `helm test` pod that runs `cleanup --preflight`, within 63 characters.
*/}}
{{- define "cleanup.preflightName" -}}
{{- printf "%s-preflight" (include "cleanup.fullname" . | trunc 53 | trimSuffix "-") }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "cleanup.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "cleanup.labels" -}}
helm.sh/chart: {{ include "cleanup.chart" . }}
{{ include "cleanup.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "cleanup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cleanup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "cleanup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cleanup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the PostgreSQL DSN, or "" when none is configured.
*/}}
{{- define "cleanup.dsnSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if .Values.database.dsn }}
{{- include "cleanup.fullname" . }}
{{- end }}
{{- end }}

{{/*
Refuse to render a postgres target that no DSN source reaches: its run would only
fail at night with "no DSN". A source is database.existingSecret or database.dsn
(exposed under every dsn_env), an extraEnv entry named after the target's dsn_env
or one of libpq's own variables (cleanup's LIBPQ_ENV), or any envFrom (the chart
cannot see which keys a ConfigMap or Secret holds). The CLEANUP_PG_TABLE quick
target reads CLEANUP_DATABASE_URL.
*/}}
{{- define "cleanup.checkDsn" -}}
{{- $values := .Values }}
{{- if not (or $values.database.existingSecret $values.database.dsn $values.envFrom) }}
{{- $envNames := dict }}
{{- range $values.extraEnv }}
{{- /* An empty value counts as unset for cleanup. */}}
{{- if or .value .valueFrom }}
{{- $_ := set $envNames .name true }}
{{- end }}
{{- end }}
{{- $libpq := false }}
{{- range list "PGHOST" "PGHOSTADDR" "PGPORT" "PGDATABASE" "PGUSER" "PGSERVICE" }}
{{- if hasKey $envNames . }}
{{- $libpq = true }}
{{- end }}
{{- end }}
{{- $targets := list }}
{{- range $values.config.postgres }}
{{- $targets = append $targets (dict "where" (printf "config.postgres %q" .name) "env" (default "CLEANUP_DATABASE_URL" .dsn_env)) }}
{{- end }}
{{- if hasKey $envNames "CLEANUP_PG_TABLE" }}
{{- $targets = append $targets (dict "where" "extraEnv CLEANUP_PG_TABLE (the postgres quick target)" "env" "CLEANUP_DATABASE_URL") }}
{{- end }}
{{- range $targets }}
{{- if not (or $libpq (hasKey $envNames .env)) }}
{{- fail (printf "%s has no DSN source: set database.existingSecret to the name of a Secret holding the DSN (recommended; its key is database.secretKey), or database.dsn (stored in the release), or provide %s through extraEnv or envFrom" .where .env) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The image reference: a digest wins over a tag; the tag defaults to the appVersion.
*/}}
{{- define "cleanup.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
One TOML key = value line per set value of a map (sorted keys; nulls left out).
JSON strings and arrays of strings are valid TOML basic strings and arrays, and
integers and booleans print the same in both, so toJson quotes every string
safely (quotes, backslashes, newlines, unicode) and leaves numbers and booleans raw.
The schema limits keys to the declared names (docs/configuration.md), which are all valid bare TOML keys.
*/}}
{{- define "cleanup.tomlPairs" -}}
{{- range $key, $value := . }}
{{- if not (kindIs "invalid" $value) }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- end }}

{{/*
config.toml (docs/configuration.md) rendered from .Values.config.
*/}}
{{- define "cleanup.configToml" -}}
# Rendered by the {{ include "cleanup.chart" . }} Helm chart from .Values.config.
{{- /* Lists are target kinds ([[kind]] tables), the rest run-level keys: the keys
     themselves come from values.schema.json, generated from the tool's own. */}}
{{- $global := dict }}
{{- range $key, $value := $.Values.config }}
{{- if not (kindIs "slice" $value) }}
{{- $_ := set $global $key $value }}
{{- end }}
{{- end }}
{{- include "cleanup.tomlPairs" $global }}
{{- range $kind, $targets := $.Values.config }}
{{- if kindIs "slice" $targets }}
{{- range $targets }}

[[{{ $kind }}]]
{{- include "cleanup.tomlPairs" . }}
{{- end }}
{{- end }}
{{- end }}
{{ end }}

{{/*
The pod spec shared by the CronJob, its dry-run twin and the `helm test` pod, so
none of them can drift from the others. Call with (dict "root" $ "mode" MODE):
  "run"       the scheduled job;
  "dry-run"   the twin: `--dry-run`, CLEANUP_DRY_RUN=true, and every volume mounted
              read-only, so a preview cannot delete even by mistake;
  "preflight" the `helm test` pod: `--preflight`, mounts read-write like the real
              job (preflight checks that the roots are writable).
*/}}
{{- define "cleanup.podSpec" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $dryRun := eq .mode "dry-run" }}
{{- $dsnSecret := include "cleanup.dsnSecretName" $root }}
restartPolicy: Never
serviceAccountName: {{ include "cleanup.serviceAccountName" $root }}
automountServiceAccountToken: {{ $values.serviceAccount.automountServiceAccountToken }}
{{- with $values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
{{- with $values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: cleanup
    image: {{ include "cleanup.image" $root | quote }}
    imagePullPolicy: {{ $values.image.pullPolicy }}
    {{- $args := $values.extraArgs }}
    {{- if $dryRun }}
    {{- $args = append $args "--dry-run" }}
    {{- else if eq .mode "preflight" }}
    {{- $args = append $args "--preflight" }}
    {{- end }}
    {{- with $args }}
    args:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    env:
      - name: CLEANUP_CONFIG
        value: /etc/cleanup/config.toml
      {{- if $dsnSecret }}
      {{- /* CLEANUP_DATABASE_URL always (also for a CLEANUP_PG_TABLE quick target),
      plus every other dsn_env the postgres targets name. */}}
      {{- $seen := dict }}
      {{- range (prepend $values.config.postgres (dict)) }}
      {{- $envName := default "CLEANUP_DATABASE_URL" .dsn_env }}
      {{- if not (hasKey $seen $envName) }}
      {{- $_ := set $seen $envName true }}
      - name: {{ $envName }}
        valueFrom:
          secretKeyRef:
            name: {{ $dsnSecret }}
            key: {{ $values.database.secretKey }}
      {{- end }}
      {{- end }}
      {{- end }}
      - name: POD_NAME
        valueFrom:
          fieldRef:
            fieldPath: metadata.name
      - name: POD_NAMESPACE
        valueFrom:
          fieldRef:
            fieldPath: metadata.namespace
      - name: JOB_NAME
        valueFrom:
          fieldRef:
            fieldPath: metadata.labels['{{ $values.jobNameLabel }}']
      {{- range $values.extraEnv }}
      {{- if not (and $dryRun (eq .name "CLEANUP_DRY_RUN")) }}
      - {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- end }}
      {{- if $dryRun }}
      - name: CLEANUP_DRY_RUN
        value: "true"
      {{- end }}
    {{- with $values.envFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $values.securityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $values.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: config
        mountPath: /etc/cleanup
        readOnly: true
      {{- /* The process's scratch space on a read-only root filesystem, never data:
      volume targets must lie inside mounts or extraVolumeMounts. */}}
      - name: tmp
        mountPath: /tmp
      {{- range $values.mounts }}
      - name: {{ .name }}
        mountPath: {{ .mountPath }}
        {{- with .subPath }}
        subPath: {{ . }}
        {{- end }}
        {{- if or .readOnly $dryRun }}
        readOnly: true
        {{- end }}
      {{- end }}
      {{- $extraMounts := list }}
      {{- range $values.extraVolumeMounts }}
      {{- /* A copy: the values are shared with the other templates. */}}
      {{- $mount := deepCopy . }}
      {{- if $dryRun }}
      {{- $_ := set $mount "readOnly" true }}
      {{- end }}
      {{- $extraMounts = append $extraMounts $mount }}
      {{- end }}
      {{- with $extraMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "cleanup.fullname" $root }}
      items:
        - key: config.toml
          path: config.toml
  - name: tmp
    {{- $emptyDir := dict }}
    {{- range $key := list "sizeLimit" "medium" }}
    {{- with get $values.tmpVolume $key }}
    {{- $_ := set $emptyDir $key . }}
    {{- end }}
    {{- end }}
    emptyDir: {{- toYaml $emptyDir | nindent 6 }}
  {{- range $values.mounts }}
  - name: {{ .name }}
    persistentVolumeClaim:
      claimName: {{ .claimName }}
      {{- if or .readOnly $dryRun }}
      readOnly: true
      {{- end }}
  {{- end }}
  {{- with $values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The Job template shared by the CronJob and its dry-run twin.
Call with (dict "root" $ "dryRun" bool).
*/}}
{{- define "cleanup.jobTemplate" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $component := ternary "dry-run" "cleanup" .dryRun }}
metadata:
  labels:
    {{- include "cleanup.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $component }}
spec:
  backoffLimit: {{ $values.backoffLimit }}
  {{- with $values.activeDeadlineSeconds }}
  activeDeadlineSeconds: {{ . }}
  {{- end }}
  {{- if not (kindIs "invalid" $values.ttlSecondsAfterFinished) }}
  ttlSecondsAfterFinished: {{ $values.ttlSecondsAfterFinished }}
  {{- end }}
  podFailurePolicy:
    rules:
      # Exit code 2 is a usage or configuration error: a retry cannot fix it.
      # Exit code 3 is a capped run: the safety brake held, and a retry would
      # delete another max_deletions. Either way the Job fails at once
      # (docs/events-and-exit-codes.md#exit-codes), whatever backoffLimit says.
      - action: FailJob
        onExitCodes:
          containerName: cleanup
          operator: In
          values: [2, 3]
      {{- if $values.podFailurePolicy.ignoreDisruptions }}
      # A pod evicted or preempted did not fail; its retry does not use up backoffLimit.
      - action: Ignore
        onPodConditions:
          - type: DisruptionTarget
            status: "True"
      {{- end }}
  template:
    metadata:
      labels:
        {{- include "cleanup.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ $component }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "cleanup.configToml" $root | sha256sum }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "cleanup.podSpec" (dict "root" $root "mode" (ternary "dry-run" "run" .dryRun)) | trim | nindent 6 }}
{{- end }}
