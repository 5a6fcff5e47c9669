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
The schema limits keys to the SPEC's names, which are all valid bare TOML keys.
*/}}
{{- define "cleanup.tomlPairs" -}}
{{- range $key, $value := . }}
{{- if not (kindIs "invalid" $value) }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- end }}

{{/*
config.toml (SPEC section 3) rendered from .Values.config.
*/}}
{{- define "cleanup.configToml" -}}
# Rendered by the {{ include "cleanup.chart" . }} Helm chart from .Values.config.
{{- $global := dict }}
{{- range $key := list "max_age" "dry_run" "max_deletions" "progress_interval" }}
{{- $_ := set $global $key (get $.Values.config $key) }}
{{- end }}
{{- include "cleanup.tomlPairs" $global }}
{{- range $kind := list "volumes" "s3" "postgres" }}
{{- range (get $.Values.config $kind) }}

[[{{ $kind }}]]
{{- include "cleanup.tomlPairs" . }}
{{- end }}
{{- end }}
{{ end }}

{{/*
The Job template shared by the CronJob and its dry-run twin.
Call with (dict "root" $ "dryRun" bool).
*/}}
{{- define "cleanup.jobTemplate" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $dsnSecret := include "cleanup.dsnSecretName" $root }}
metadata:
  labels:
    {{- include "cleanup.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ ternary "dry-run" "cleanup" .dryRun }}
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
      # Exit code 2 is a usage or configuration error (SPEC section 7): a
      # retry cannot fix it, so the Job fails at once and says so.
      - action: FailJob
        onExitCodes:
          containerName: cleanup
          operator: In
          values: [2]
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
        app.kubernetes.io/component: {{ ternary "dry-run" "cleanup" .dryRun }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "cleanup.configToml" $root | sha256sum }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "cleanup.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $values.serviceAccount.automountServiceAccountToken }}
      {{- with $values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      {{- with $values.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: cleanup
          image: {{ include "cleanup.image" $root | quote }}
          imagePullPolicy: {{ $values.image.pullPolicy }}
          {{- $args := $values.extraArgs }}
          {{- if .dryRun }}
          {{- $args = append $args "--dry-run" }}
          {{- end }}
          {{- with $args }}
          args:
            {{- toYaml . | nindent 12 }}
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
            {{- if not (and $.dryRun (eq .name "CLEANUP_DRY_RUN")) }}
            - {{- toYaml . | nindent 14 }}
            {{- end }}
            {{- end }}
            {{- if .dryRun }}
            - name: CLEANUP_DRY_RUN
              value: "true"
            {{- end }}
          {{- with $values.envFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $values.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: config
              mountPath: /etc/cleanup
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- range $values.mounts }}
            - name: {{ .name }}
              mountPath: {{ .mountPath }}
              {{- with .subPath }}
              subPath: {{ . }}
              {{- end }}
              {{- if .readOnly }}
              readOnly: true
              {{- end }}
            {{- end }}
            {{- with $values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
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
          emptyDir: {{- toYaml $emptyDir | nindent 12 }}
        {{- range $values.mounts }}
        - name: {{ .name }}
          persistentVolumeClaim:
            claimName: {{ .claimName }}
            {{- if .readOnly }}
            readOnly: true
            {{- end }}
        {{- end }}
        {{- with $values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
