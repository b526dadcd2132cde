{{/* Kubernetes names are DNS labels: at most 63 characters, no trailing dash. */}}
{{- define "meterline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "meterline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: (dict "root" $ "component" "gateway"). The
component suffix is kept whole; the release part is shortened to make room for it. */}}
{{- define "meterline.componentName" -}}
{{- $suffix := printf "-%s" .component -}}
{{- printf "%s%s" (include "meterline.fullname" .root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix -}}
{{- end -}}

{{- define "meterline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "meterline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meterline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "meterline.labels" -}}
helm.sh/chart: {{ include "meterline.chart" . }}
{{ include "meterline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: meterline
{{- end -}}

{{/* (dict "root" $ "component" "gateway") */}}
{{- define "meterline.componentLabels" -}}
{{ include "meterline.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "meterline.componentSelectorLabels" -}}
{{ include "meterline.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "meterline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "meterline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "meterline.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* What every pod shares: service account, security context, scheduling.
(dict "root" $ "hook" false). A hook's pod runs before the release's ServiceAccount exists,
so it keeps the namespace's default one; no pod mounts a token. */}}
{{- define "meterline.podSpec" -}}
{{- $values := .root.Values -}}
# Meterline never calls the Kubernetes API.
automountServiceAccountToken: false
{{- if not .hook }}
serviceAccountName: {{ include "meterline.serviceAccountName" .root }}
{{- end }}
securityContext:
  {{- toYaml $values.podSecurityContext | nindent 2 }}
{{- with $values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The environment every service shares: Kafka, ClickHouse, the configuration file. */}}
{{- define "meterline.env" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: METERLINE_USAGE_TOPIC
  value: {{ .Values.kafka.usageTopic | quote }}
- name: METERLINE_DEAD_LETTER_TOPIC
  value: {{ .Values.kafka.deadLetterTopic | quote }}
- name: CLICKHOUSE_USER
  valueFrom: { secretKeyRef: { name: {{ .Values.clickhouse.credentialsSecret }}, key: username } }
- name: CLICKHOUSE_PASSWORD
  valueFrom: { secretKeyRef: { name: {{ .Values.clickhouse.credentialsSecret }}, key: password } }
- name: CLICKHOUSE_URL
  value: {{ .Values.clickhouse.url | replace "://" "://$(CLICKHOUSE_USER):$(CLICKHOUSE_PASSWORD)@" | quote }}
- name: METERLINE_CLICKHOUSE_DATABASE
  value: {{ .Values.clickhouse.database | quote }}
- name: METERLINE_CONFIG_FILE
  value: /etc/meterline/meterline.toml
{{- end -}}

{{/* Volumes every service mounts: the configuration, and /tmp (the root is read-only). */}}
{{- define "meterline.volumes" -}}
- name: config
  configMap:
    name: {{ include "meterline.fullname" . }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{- define "meterline.volumeMounts" -}}
- name: config
  mountPath: /etc/meterline
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* startup, readiness and liveness probes on a named port: (dict "port" "http" "probes" .Values.gateway.probes) */}}
{{- define "meterline.probes" -}}
startupProbe:
  httpGet: { path: /livez, port: {{ .port }} }
  periodSeconds: {{ .probes.startup.periodSeconds }}
  failureThreshold: {{ .probes.startup.failureThreshold }}
readinessProbe:
  httpGet: { path: /readyz, port: {{ .port }} }
  periodSeconds: {{ .probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .probes.readiness.failureThreshold }}
livenessProbe:
  httpGet: { path: /livez, port: {{ .port }} }
  periodSeconds: {{ .probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .probes.liveness.failureThreshold }}
{{- end -}}
