{{/*
Names and labels (helm create conventions).
*/}}
{{- define "vision-predictors.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vision-predictors.fullname" -}}
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

{{- define "vision-predictors.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vision-predictors.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vision-predictors.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object the chart renders (not pod templates: see podLabels). */}}
{{- define "vision-predictors.labels" -}}
helm.sh/chart: {{ include "vision-predictors.chart" . }}
{{ include "vision-predictors.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vision-predictors
{{- end }}

{{/* Selector of one unit's pods (stable and canary). Args: dict root unit. */}}
{{- define "vision-predictors.unitSelectorLabels" -}}
{{ include "vision-predictors.selectorLabels" .root }}
app.kubernetes.io/component: predictor
vision-predictors.io/unit: {{ .unit.key }}
{{- end }}

{{/* Labels of every server pod: stable across chart upgrades (a changed pod label would roll
     Deployments and create Knative revisions). Args: dict root unit track. */}}
{{- define "vision-predictors.podLabels" -}}
{{ include "vision-predictors.unitSelectorLabels" . }}
vision-predictors.io/model: {{ .unit.predictor }}
vision-predictors.io/device: {{ .unit.device }}
{{- with .track }}
vision-predictors.io/track: {{ . }}
{{- end }}
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "vision-predictors.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vision-predictors.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference from {repository, tag, digest}; args: dict image default-tag */}}
{{- define "vision-predictors.imageRef" -}}
{{- $tag := default .defaultTag .image.tag }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}
