{{/* spec.predictor (or spec.canary[].predictor) of an InferenceService. Args: dict root unit
     (standardCanary: true for spec.canary[0].predictor). KServe merges a Standard-mode canary over
     a copy of the stable predictor and runs it at fixed replicas: the canary carries a `name` and no
     scaling fields (inference_service_validation.go refuses maxReplicas, scaleMetric, scaleTarget and
     autoScaling there; leaving out minReplicas gives ceil(stable minReplicas x trafficPercent)). */}}
{{- define "vision-predictors.predictorSpec" -}}
{{- $root := .root }}
{{- $u := .unit }}
{{- $v := .root.Values }}
{{- $kmode := $v.kserve.deploymentMode }}
{{- $as := $u.autoscaling -}}
{{- $standardCanary := default false .standardCanary -}}
{{- if $standardCanary }}
name: canary
{{- end }}
labels:
  {{- include "vision-predictors.podLabels" (dict "root" $root "unit" $u "track" $u.track) | nindent 2 }}
{{- $annotations := include "vision-predictors.podAnnotations" $root | fromYaml }}
{{- /* KServe's pod webhook rewrites prometheus.io/port to its own port when scraping is enabled
     cluster-wide; "false" keeps /metrics on the server's http port. */}}
{{- $_ := set $annotations "serving.kserve.io/enable-prometheus-scraping" "false" }}
{{- if eq $kmode "Knative" }}
{{- $_ := set $annotations "serving.knative.dev/progress-deadline" $v.kserve.progressDeadline }}
{{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $standardCanary }}
{{- else }}
minReplicas: {{ $as.minReplicas }}
maxReplicas: {{ $as.maxReplicas }}
{{- if $u.scaledObject }}
{{- /* autoscalerClass external: the chart's ScaledObject scales the predictor Deployment */}}
{{- else if and (eq $kmode "Standard") $as.keda.enabled }}
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
{{- end }}
{{- with $v.kserve.modelscopeStorageContainer }}
{{- if hasPrefix "modelscope://" (default "" $u.weights.storageUri) }}
# Ours, not the first modelscope:// match of KServe's unordered list (see values kserve.modelscopeStorageContainer).
storageContainerName: {{ . }}
{{- end }}
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
