{{/* spec.predictor (or spec.canary[].predictor) of an InferenceService. Args: dict root unit. */}}
{{- define "vision-predictors.predictorSpec" -}}
{{- $root := .root }}
{{- $u := .unit }}
{{- $v := .root.Values }}
{{- $kmode := $v.kserve.deploymentMode }}
{{- $as := $u.autoscaling -}}
labels:
  {{- include "vision-predictors.podLabels" (dict "root" $root "unit" $u "track" $u.track) | nindent 2 }}
{{- $annotations := include "vision-predictors.podAnnotations" $root | fromYaml }}
{{- if eq $kmode "Knative" }}
{{- $_ := set $annotations "serving.knative.dev/progress-deadline" $v.kserve.progressDeadline }}
{{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
minReplicas: {{ $as.minReplicas }}
maxReplicas: {{ $as.maxReplicas }}
{{- if and (eq $kmode "Standard") $as.keda.enabled }}
autoScaling:
  metrics:
    {{- if $as.keda.cpu }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $as.target }}
    {{- end }}
    - type: External
      external:
        metric:
          backend: prometheus
          serverAddress: {{ $as.keda.serverAddress }}
          query: {{ include "vision-predictors.placeholders" (dict "s" $as.keda.query "unit" $u "root" $root) | quote }}
        target:
          type: Value
          value: {{ $as.keda.threshold | quote }}
{{- else }}
scaleMetric: {{ $as.metric }}
scaleTarget: {{ $as.target }}
{{- end }}
timeout: {{ $v.kserve.timeoutSeconds }}
{{- if eq $kmode "Standard" }}
deploymentStrategy:
  type: RollingUpdate
  rollingUpdate:
    maxSurge: {{ $v.rollout.maxSurge }}
    maxUnavailable: {{ $v.rollout.maxUnavailable }}
{{- end }}
{{ include "vision-predictors.podSpec" . }}
{{- end }}
