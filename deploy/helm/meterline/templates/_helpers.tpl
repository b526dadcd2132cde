{{- define "meterline.name" -}}
{{- .Release.Name -}}-meterline
{{- end -}}

{{- define "meterline.labels" -}}
app.kubernetes.io/name: meterline
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
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

{{- define "meterline.configVolume" -}}
- name: config
  configMap:
    name: {{ include "meterline.name" . }}
{{- end -}}

{{- define "meterline.configMount" -}}
- name: config
  mountPath: /etc/meterline
  readOnly: true
{{- end -}}
