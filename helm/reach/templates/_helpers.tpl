{{- define "reach.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reach.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "reach.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reach.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "reach.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "reach.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The config file, as JSON (toToml would write every number as a float): the chart owns where reach listens and stores. */}}
{{- define "reach.config" -}}
{{- $own := dict "listen" (printf "0.0.0.0:%v" .Values.service.grpcPort) "admin_listen" (printf "0.0.0.0:%v" .Values.service.adminPort) "data_dir" "/var/lib/reach" }}
{{- if .Values.tls.enabled }}
{{- $tls := dict "cert_file" "/etc/reach/tls/tls.crt" "key_file" "/etc/reach/tls/tls.key" }}
{{- if .Values.tls.clientCaKey }}
{{- $_ := set $tls "client_ca_file" (printf "/etc/reach/tls/%s" .Values.tls.clientCaKey) }}
{{- end }}
{{- $_ := set $own "tls" $tls }}
{{- end }}
{{- if eq .Values.store.backend "redis" }}
{{- $redis := dict "wait_replicas" .Values.store.redis.waitReplicas }}
{{- if .Values.store.redis.nodes }}
{{- $_ := set $redis "nodes" .Values.store.redis.nodes }}
{{- end }}
{{- $_ := set $own "store" (dict "backend" "redis" "redis" $redis) }}
{{- end }}
{{- if .Values.webhooks.enabled }}
{{- $_ := set $own "webhooks" (dict "listen" (printf "0.0.0.0:%v" .Values.webhooks.port) "public_url" .Values.webhooks.publicUrl) }}
{{- end }}
{{- toPrettyJson (mergeOverwrite (deepCopy .Values.config) $own) }}
{{- end }}

{{- define "reach.generateToken" -}}
{{- if not (or .Values.auth.existingSecret .Values.auth.tokens .Values.insecure (and .Values.tls.enabled .Values.tls.clientCaKey)) }}true{{ end }}
{{- end }}

{{- define "reach.tokensSecret" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecret }}
{{- else if .Values.auth.tokens }}{{ include "reach.fullname" . }}-tokens
{{- else }}{{ include "reach.fullname" . }}-generated-token{{ end }}
{{- end }}

{{- define "reach.authEnabled" -}}
{{- if or .Values.auth.existingSecret .Values.auth.tokens (include "reach.generateToken" .) }}true{{ end }}
{{- end }}

{{- define "reach.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}
