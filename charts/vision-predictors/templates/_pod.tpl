{{/*
The server pod: its spec (shared by the InferenceService predictor, the Deployment and the canary), env,
affinity and annotations.
*/}}

{{/* The unit's affinity. A CPU pool in bf16 also requires a node whose CPU has native bf16 (bf16NodeAffinity),
     as Node Feature Discovery labels it: each required term is ANDed with one label, once per label, and the
     terms are ORed (AVX512BF16 or AMXBF16). Per unit, so a canary in another precision gets its own.
     Args: dict root unit. */}}
{{- define "vision-predictors.affinity" -}}
{{- $u := .unit }}
{{- $affinity := deepCopy (default dict $u.affinity) }}
{{- if and (eq $u.device "cpu") (eq (toString $u.settings.precision) "bf16") .root.Values.bf16NodeAffinity }}
{{- $nodeAffinity := default dict $affinity.nodeAffinity }}
{{- $required := default dict (index $nodeAffinity "requiredDuringSchedulingIgnoredDuringExecution") }}
{{- $terms := list }}
{{- range $term := default (list dict) $required.nodeSelectorTerms }}
{{- range $label := list "feature.node.kubernetes.io/cpu-cpuid.AVX512BF16" "feature.node.kubernetes.io/cpu-cpuid.AMXBF16" }}
{{- $terms = append $terms (set (deepCopy $term) "matchExpressions" (append (default list $term.matchExpressions) (dict "key" $label "operator" "In" "values" (list "true")))) }}
{{- end }}
{{- end }}
{{- $_ := set $required "nodeSelectorTerms" $terms }}
{{- $_ := set $nodeAffinity "requiredDuringSchedulingIgnoredDuringExecution" $required }}
{{- $_ := set $affinity "nodeAffinity" $nodeAffinity }}
{{- end }}
{{- if $affinity }}{{ toYaml $affinity }}{{ end }}
{{- end }}

{{/* terminationGracePeriodSeconds: drain delay + server drain time + margin. Args: dict root unit. */}}
{{- define "vision-predictors.terminationGracePeriod" -}}
{{- add (int .root.Values.drainDelaySeconds) (int (default 30 .unit.settings.shutdownGraceSeconds)) 5 }}
{{- end }}

{{/* Server container env. Args: dict root unit. */}}
{{- define "vision-predictors.env" -}}
{{- $root := .root }}
{{- $u := .unit }}
{{- $envNames := .root.Files.Get "files/settings-env.yaml" | fromYaml -}}
{{- if and (eq $root.Values.mode "kserve") $u.weights.storageUri }}
# KServe's storage initializer downloads this into /mnt/models (custom predictor convention).
- name: STORAGE_URI
  value: {{ $u.weights.storageUri | quote }}
{{- else if and (eq $root.Values.mode "kserve") $u.weights.pvc }}
- name: STORAGE_URI
  value: {{ printf "pvc://%s/%s" $u.weights.pvc.claimName (default "" $u.weights.pvc.subPath) | trimSuffix "/" | quote }}
{{- end }}
- name: {{ $envNames.chart.device }}
  value: {{ $u.device | quote }}
- name: {{ $envNames.chart.httpPort }}
  value: {{ $root.Values.ports.http | quote }}
- name: {{ $envNames.chart.grpcPort }}
  value: {{ $root.Values.ports.grpc | quote }}
- name: {{ $envNames.chart.enableGrpc }}
  value: {{ ternary "false" "true" (eq (include "vision-predictors.isKnative" $root) "true") | quote }}
{{- range $key := keys $envNames.settings | sortAlpha }}
{{- $val := index $u.settings $key }}
{{- if not (kindIs "invalid" $val) }}
{{- /* values numbers are float64: 20971520 would print as 2.097152e+07 */}}
{{- if and (kindIs "float64" $val) (eq $val (float64 (int64 $val))) }}{{ $val = int64 $val }}{{ end }}
- name: {{ index $envNames.settings $key }}
  value: {{ $val | toString | quote }}
{{- end }}
{{- end }}
# BLAS/OpenMP pools sized to the CPU limit (rounded up), not to the node's cores.
- name: OMP_NUM_THREADS
  valueFrom:
    resourceFieldRef:
      containerName: kserve-container
      resource: limits.cpu
      divisor: "1"
- name: MKL_NUM_THREADS
  valueFrom:
    resourceFieldRef:
      containerName: kserve-container
      resource: limits.cpu
      divisor: "1"
{{- if eq $u.device "cuda" }}
# Fewer fragmentation OOMs with variable batch and image sizes.
- name: PYTORCH_CUDA_ALLOC_CONF
  value: expandable_segments:True
{{- end }}
- name: TMPDIR
  value: /tmp
- name: HOME
  value: /tmp
- name: MODELSCOPE_CACHE
  value: /tmp/modelscope
- name: TORCH_HOME
  value: /tmp/torch
{{- with $root.Values.otel }}
{{- if .enabled }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_SERVICE_NAME
  value: {{ default $u.name .serviceName | quote }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .tracesSampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .tracesSamplerArg | quote }}
{{- $attrs := list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" "k8s.node.name=$(K8S_NODE_NAME)" (printf "service.version=%s" $root.Chart.AppVersion) (printf "vision_predictors.model=%s" $u.predictor) }}
{{- with $u.track }}
{{- $attrs = append $attrs (printf "vision_predictors.track=%s" .) }}
{{- end }}
{{- range $k := keys .resourceAttributes | sortAlpha }}
{{- $attrs = append $attrs (printf "%s=%s" $k (index $.root.Values.otel.resourceAttributes $k)) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}
{{- end }}
{{- if $u.jobs.enabled }}
{{ include "vision-predictors.jobs.env" $root }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level fields plus the server container, shared by the InferenceService predictor and
     the Deployment pod template. Args: dict root unit. */}}
{{- define "vision-predictors.podSpec" -}}
{{- $root := .root }}
{{- $u := .unit }}
{{- $v := .root.Values }}
{{- $knative := include "vision-predictors.isKnative" $root }}
{{- $readyPath := printf "/v2/models/%s/ready" $u.predictor -}}
serviceAccountName: {{ include "vision-predictors.serviceAccountName" $root }}
automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- if not $knative }}
terminationGracePeriodSeconds: {{ include "vision-predictors.terminationGracePeriod" . }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $u.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $u.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (include "vision-predictors.affinity" (dict "root" $root "unit" $u) | fromYaml) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.topologySpread }}
topologySpreadConstraints:
{{- range $v.topologySpread }}
  - {{ toYaml . | nindent 4 | trim }}
    labelSelector:
      matchLabels:
        {{- include "vision-predictors.unitSelectorLabels" $ | nindent 8 }}
{{- end }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $v.tmpVolume.sizeLimit }}
      {{- with $v.tmpVolume.medium }}
      medium: {{ . }}
      {{- end }}
{{- if and (eq $v.mode "deployment") $u.weights.pvc }}
  - name: model-weights
    persistentVolumeClaim:
      claimName: {{ $u.weights.pvc.claimName }}
      readOnly: true
{{- end }}
containers:
  # KServe routes to the first port of the container named kserve-container (same name in
  # deployment mode, so `kubectl logs -c kserve-container` works in both modes).
  - name: kserve-container
    image: {{ $u.imageRef }}
    imagePullPolicy: {{ $u.pullPolicy }}
    args:
      - serve
      - --model-dir
      - {{ printf "%s=%s" $u.predictor (include "vision-predictors.modelDir" $u) }}
    env:
      {{- include "vision-predictors.env" . | trim | nindent 6 }}
    ports:
      - name: {{ ternary "http" "http1" (eq $v.mode "deployment") }}
        containerPort: {{ $v.ports.http }}
        protocol: TCP
      {{- if not $knative }}
      - name: grpc
        containerPort: {{ $v.ports.grpc }}
        protocol: TCP
      {{- end }}
    startupProbe:
      httpGet:
        path: {{ $readyPath }}
        port: {{ $v.ports.http }}
      {{- toYaml $u.probes.startup | nindent 6 }}
    readinessProbe:
      httpGet:
        path: {{ $readyPath }}
        port: {{ $v.ports.http }}
      {{- toYaml $u.probes.readiness | nindent 6 }}
    livenessProbe:
      httpGet:
        path: /v2/health/live
        port: {{ $v.ports.http }}
      {{- toYaml $u.probes.liveness | nindent 6 }}
    {{- if not $knative }}
    lifecycle:
      preStop:
        sleep:
          seconds: {{ $v.drainDelaySeconds }}
    {{- end }}
    resources:
      {{- toYaml $u.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if and (eq $v.mode "deployment") $u.weights.pvc }}
      - name: model-weights
        mountPath: /mnt/models
        {{- with $u.weights.pvc.subPath }}
        subPath: {{ . }}
        {{- end }}
        readOnly: true
      {{- end }}
{{- end }}

{{/* Pod annotations (scrape, OTel operator, extra). Args: root. */}}
{{- define "vision-predictors.podAnnotations" -}}
{{- if .Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ports.http | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .Values.otel.operatorSidecarInject }}
sidecar.opentelemetry.io/inject: {{ . | quote }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
