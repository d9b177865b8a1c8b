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

{{/*
Resolved models: every enabled entry of .Values.models merged with the global defaults, sorted by
key, as YAML {units: [...]}. Templates use:
  {{- range (include "vision-predictors.units" . | fromYaml).units }}
All cross-field rules the JSON schema cannot express are checked here (fail with a message).
*/}}
{{- define "vision-predictors.units" -}}
{{- $root := . }}
{{- $v := .Values }}
{{- /* <release>-<key> (or <fullnameOverride>-<key>): the chart name would only lengthen every
     KServe/Knative-derived name (<isvc>-predictor-<ns>.<domain> must fit a 63-char DNS label). */}}
{{- $prefix := default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- $kmode := $v.kserve.deploymentMode }}
{{- $units := list }}
{{- range $key := keys $v.models | sortAlpha }}
{{- $m := index $v.models $key }}
{{- if and $m (ne (toString $m.enabled) "false") }}
{{- $name := printf "%s-%s" $prefix $key }}
{{- if gt (len $name) 45 }}
{{- fail (printf "unit name %q is %d characters; the limit is 45 (KServe/Knative derive longer names from it): shorten the release name (or fullnameOverride) or the models key" $name (len $name)) }}
{{- end }}
{{- $device := default "cpu" $m.device }}
{{- $gpuCount := default 1 $m.gpuCount }}
{{- $knative := and (eq $v.mode "kserve") (eq $kmode "Knative") }}
{{- $image := mergeOverwrite (deepCopy $v.image) (default dict $m.image) }}
{{- $presets := ternary $v.cudaResourcePresets $v.resourcePresets (eq $device "cuda") }}
{{- $resources := deepCopy (default (index $presets $m.predictor) $m.resources) }}
{{- if eq $device "cuda" }}
{{- $limits := default dict $resources.limits }}
{{- $_ := set $limits "nvidia.com/gpu" $gpuCount }}
{{- $_ := set $resources "limits" $limits }}
{{- end }}
{{- $pool := index $v.scheduling $device }}
{{- $settings := mergeOverwrite (deepCopy $v.settings) (default dict $m.settings) }}
{{- $autoscaling := mergeOverwrite (deepCopy $v.autoscaling) (default dict $m.autoscaling) }}
{{- $probes := mergeOverwrite (deepCopy $v.probes) (default dict $m.probes) }}
{{- $canaryIn := default dict $m.canary }}
{{- $canaryImage := mergeOverwrite (deepCopy $image) (default dict $canaryIn.image) }}
{{- /* cuda models run the CUDA build chosen by cuda.variant: <tag><tagSuffix>, pinned by that
     variant's digest (image.digest pins the plain tag, another build). */}}
{{- $variantName := default $v.cuda.variant $m.cudaVariant }}
{{- $variant := index $v.cuda.variants $variantName }}
{{- if eq $device "cuda" }}
{{- /* image digests (global, model, canary) pin the plain tag, another build: a cuda canary with its
     own tag is referenced by tag; one on the stable tag shares the variant's digest */}}
{{- $sameTag := eq (default $root.Chart.AppVersion $canaryImage.tag) (default $root.Chart.AppVersion $image.tag) }}
{{- $_ := set $image "tag" (printf "%s%s" (default $root.Chart.AppVersion $image.tag) $variant.tagSuffix) }}
{{- $_ := set $image "digest" $variant.digest }}
{{- $_ := set $canaryImage "tag" (printf "%s%s" (default $root.Chart.AppVersion $canaryImage.tag) $variant.tagSuffix) }}
{{- $_ := set $canaryImage "digest" (ternary $variant.digest "" $sameTag) }}
{{- end }}
{{- $affinity := deepCopy (default dict (ternary $m.affinity $pool.affinity (hasKey $m "affinity"))) }}
{{- if and (eq $device "cuda") $v.cuda.driverAffinity }}
{{- /* nodeSelectorTerms are ORed: the driver requirement joins every term (Gt takes one integer). */}}
{{- $driverExpr := dict "key" "nvidia.com/cuda.driver-version.major" "operator" "Gt" "values" (list (toString (sub (int $variant.minDriverMajor) 1))) }}
{{- $nodeAffinity := default dict $affinity.nodeAffinity }}
{{- $required := default dict (index $nodeAffinity "requiredDuringSchedulingIgnoredDuringExecution") }}
{{- $terms := default (list dict) $required.nodeSelectorTerms }}
{{- $withDriver := list }}
{{- range $term := $terms }}
{{- $withDriver = append $withDriver (set (deepCopy $term) "matchExpressions" (append (default list $term.matchExpressions) $driverExpr)) }}
{{- end }}
{{- $_ := set $required "nodeSelectorTerms" $withDriver }}
{{- $_ := set $nodeAffinity "requiredDuringSchedulingIgnoredDuringExecution" $required }}
{{- $_ := set $affinity "nodeAffinity" $nodeAffinity }}
{{- end }}
{{- /* per-mode scaling defaults: KServe's KPA takes concurrency/rps only, its HPA cpu/memory only */}}
{{- if not $autoscaling.metric }}
{{- $_ := set $autoscaling "metric" (ternary "concurrency" "cpu" $knative) }}
{{- end }}
{{- if kindIs "invalid" $autoscaling.target }}
{{- $_ := set $autoscaling "target" (ternary 8 70 (has $autoscaling.metric (list "concurrency" "rps"))) }}
{{- end }}
{{- /* jobs: models.<key>.jobs over the global switch and lag trigger; KEDA scales a pool on its
     stream's lag only if the pool scales at all. The chart renders a ScaledObject itself (KServe's
     autoScaling spec has no redis-streams trigger) for jobs scaling, and in deployment mode for
     autoscaling.keda too (it replaces the HPA there). */}}
{{- $jobs := mergeOverwrite (dict "enabled" $v.jobs.enabled "keda" (pick $v.jobs.keda "enabled" "lagCount" "activationLagCount")) (deepCopy (default dict $m.jobs)) }}
{{- $scales := gt (int $autoscaling.maxReplicas) (int $autoscaling.minReplicas) }}
{{- $jobsScaling := and $jobs.enabled $jobs.keda.enabled $scales (not $knative) }}
{{- $scaledObject := and $scales (or $jobsScaling (and (eq $v.mode "deployment") $autoscaling.keda.enabled)) }}
{{- $canary := dict "enabled" (default false $canaryIn.enabled) "trafficPercent" (ternary $canaryIn.trafficPercent $v.canary.trafficPercent (hasKey $canaryIn "trafficPercent")) "imageRef" (include "vision-predictors.imageRef" (dict "image" $canaryImage "defaultTag" $root.Chart.AppVersion)) "weights" (default $m.weights $canaryIn.weights) "settings" (mergeOverwrite (deepCopy $settings) (default dict $canaryIn.settings)) }}
{{- /* cross-field rules */}}
{{- if and (eq $v.mode "kserve") (eq $kmode "Standard") }}
{{- /* KServe's default ingress domainTemplate {{ .Name }}-{{ .Namespace }}: the host's first label */}}
{{- $component := ternary "canary-predictor" "predictor" (and $canary.enabled true) }}
{{- $hostLabel := printf "%s-%s-%s" $name $component $root.Release.Namespace }}
{{- if gt (len $hostLabel) 63 }}
{{- fail (printf "models.%s: KServe (Standard mode) names this model's host %s.<domain> with its default domainTemplate {{ .Name }}-{{ .Namespace }}, and its first label %q is %d characters: its reconciler refuses more than 63 (\"failed creating host name\") and never creates the Deployment. Shorten the release name (or fullnameOverride), the models key or the namespace" $key $hostLabel $hostLabel (len $hostLabel)) }}
{{- end }}
{{- end }}
{{- if gt (int $gpuCount) 1 }}
{{- fail (printf "models.%s: gpuCount %d: the server drives one device per pod; run more replicas (or more model keys) instead of more GPUs per pod" $key (int $gpuCount)) }}
{{- end }}
{{- if and $knative (has $autoscaling.metric (list "cpu" "memory")) }}
{{- fail (printf "models.%s: autoscaling.metric %s is not a Knative metric: KServe refuses it in Knative mode (\"[%s] is not a supported metric\"); use concurrency or rps (or leave metric empty)" $key $autoscaling.metric $autoscaling.metric) }}
{{- end }}
{{- if and (eq $v.mode "kserve") (eq $kmode "Standard") (not $autoscaling.keda.enabled) (gt (int $autoscaling.target) 100) }}
{{- fail (printf "models.%s: autoscaling.target %d: KServe's HPA validation accepts a utilization target of 1-100" $key (int $autoscaling.target)) }}
{{- end }}
{{- if and (eq $device "cuda") (not $knative) (gt (int $autoscaling.maxReplicas) (int $autoscaling.minReplicas)) (not $autoscaling.keda.enabled) (not $autoscaling.customMetric.enabled) }}
{{- fail (printf "models.%s: a GPU pool scales on queue depth, not CPU: enable autoscaling.keda (kserve Standard) or autoscaling.customMetric (deployment mode) with predictors_queue_depth_items, or set minReplicas = maxReplicas" $key) }}
{{- end }}
{{- range $w := list $m.weights $canary.weights }}
{{- $hubPath := trimPrefix "modelscope://" (default "" $w.storageUri) }}
{{- if hasPrefix "modelscope://" (default "" $w.storageUri) }}
{{- if and $v.kserve.modelscopeStorageContainer (contains ":" $hubPath) }}
{{- fail (printf "models.%s: %s: the %s ClusterStorageContainer reads modelscope://owner/model@revision (owner/model:revision is the syntax of KServe's built-in downloader, kserve.modelscopeStorageContainer=\"\")" $key $w.storageUri $v.kserve.modelscopeStorageContainer) }}
{{- end }}
{{- if and (not $v.kserve.modelscopeStorageContainer) (contains "@" $hubPath) }}
{{- fail (printf "models.%s: %s: with kserve.modelscopeStorageContainer=\"\" KServe's built-in downloader may run, and it reads modelscope://owner/model:revision" $key $w.storageUri) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $canary.enabled (eq $v.mode "kserve") (eq $kmode "Standard") }}
{{- if not $v.kserve.gatewayApi.enabled }}
{{- fail (printf "models.%s: a Standard-mode canary only receives traffic through Gateway API HTTPRoutes (KServe >= 0.21, ingress.enableGatewayApi): set kserve.gatewayApi.enabled=true; an Ingress and the <isvc>-predictor Service send 100 %% to stable" $key) }}
{{- end }}
{{- if $m.weights.path }}
{{- fail (printf "models.%s: a Standard-mode canary needs stable weights with a storage URI (weights.storageUri or weights.pvc): KServe refuses a canary whose stable predictor has none, and weights.path has none" $key) }}
{{- end }}
{{- if $autoscaling.keda.enabled }}
{{- fail (printf "models.%s: KEDA and a Standard-mode canary do not mix: KServe builds the canary's autoscaler from the same class with no metrics (a ScaledObject without triggers); scale the stable predictor with the HPA while the canary runs" $key) }}
{{- end }}
{{- if $jobsScaling }}
{{- fail (printf "models.%s: jobs scaling and a Standard-mode canary do not mix: with serving.kserve.io/autoscalerClass external KServe creates the canary Deployment without its fixed replica count (1 pod whatever trafficPercent); set jobs.keda.enabled=false for this model while the canary runs" $key) }}
{{- end }}
{{- if gt (len $name) 41 }}
{{- fail (printf "models.%s: unit name %q is %d characters; with a Standard-mode canary the limit is 41 (KServe labels the canary pods app: isvc.<name>-canary-predictor, at most 63 characters)" $key $name (len $name)) }}
{{- end }}
{{- $stableUri := default "" $m.weights.storageUri }}
{{- $canaryUri := default "" $canary.weights.storageUri }}
{{- if and $v.kserve.modelscopeStorageContainer (hasPrefix "modelscope://" $stableUri) (not (hasPrefix "modelscope://" $canaryUri)) }}
{{- fail (printf "models.%s: the canary inherits spec.predictor.storageContainerName %q (KServe merges the canary over the stable predictor), which only downloads modelscope://: give the canary modelscope:// weights too, or set kserve.modelscopeStorageContainer=\"\"" $key $v.kserve.modelscopeStorageContainer) }}
{{- end }}
{{- end }}
{{- if eq $v.mode "deployment" }}
{{- if $m.weights.storageUri }}
{{- fail (printf "models.%s: weights.storageUri needs KServe's storage initializer; in deployment mode use weights.pvc or weights.path" $key) }}
{{- end }}
{{- if $canary.enabled }}
{{- fail (printf "models.%s: canary is supported in kserve mode only" $key) }}
{{- end }}
{{- if and $scaledObject $autoscaling.customMetric.enabled }}
{{- fail (printf "models.%s: KEDA scales this pool (autoscaling.keda or jobs.keda), and a ScaledObject cannot carry autoscaling.customMetric (an HPA metric of your metrics adapter): use autoscaling.keda's Prometheus query instead" $key) }}
{{- end }}
{{- else }}
{{- if $autoscaling.customMetric.enabled }}
{{- fail (printf "models.%s: autoscaling.customMetric is for deployment mode; in kserve mode use autoscaling.keda" $key) }}
{{- end }}
{{- if and $autoscaling.keda.enabled (eq $kmode "Knative") }}
{{- fail (printf "models.%s: KEDA autoscaling needs kserve.deploymentMode Standard" $key) }}
{{- end }}
{{- if and (eq $v.mode "kserve") (eq $kmode "Standard") $autoscaling.keda.enabled (not $scaledObject) (gt (len $name) 44) }}
{{- fail (printf "models.%s: unit name %q is %d characters; with autoscaling.keda the limit is 44 (KServe names its ScaledObject <name>-predictor, and KEDA >= 2.20 refuses one whose HPA name keda-hpa-<name>-predictor exceeds 63)" $key $name (len $name)) }}
{{- end }}
{{- end }}
{{- if and (has $autoscaling.metric (list "concurrency" "rps")) (not (and (eq $v.mode "kserve") (eq $kmode "Knative"))) }}
{{- fail (printf "models.%s: autoscaling.metric %s needs kserve.deploymentMode Knative; use cpu or memory" $key $autoscaling.metric) }}
{{- end }}
{{- if gt (int $autoscaling.minReplicas) (int $autoscaling.maxReplicas) }}
{{- fail (printf "models.%s: autoscaling.minReplicas > maxReplicas" $key) }}
{{- end }}
{{- if and (eq (int $autoscaling.minReplicas) 0) (not $knative) (not $jobsScaling) }}
{{- fail (printf "models.%s: minReplicas 0 (scale to zero) needs kserve.deploymentMode Knative, or jobs scaling (jobs.enabled with jobs.keda: KEDA wakes the pool on a backlog)" $key) }}
{{- end }}
{{- if $jobs.enabled }}
{{- if not (or $v.jobs.redis.url $v.jobs.redis.existingSecret) }}
{{- fail (printf "models.%s: jobs are on but Redis is not set: jobs.redis.url or jobs.redis.existingSecret" $key) }}
{{- end }}
{{- if and $knative $jobs.keda.enabled }}
{{- fail (printf "models.%s: jobs.keda (scaling on the stream's backlog) needs kserve.deploymentMode Standard or deployment mode: Knative's autoscaler owns the revisions and scales on requests only; set jobs.keda.enabled=false (the pods still take jobs)" $key) }}
{{- end }}
{{- if and $knative (eq (int $autoscaling.minReplicas) 0) }}
{{- fail (printf "models.%s: a Knative pool at zero takes no jobs (Knative wakes it on requests only): keep minReplicas >= 1 with jobs on" $key) }}
{{- end }}
{{- end }}
{{- $units = append $units (dict
    "key" $key
    "name" $name
    "predictor" $m.predictor
    "device" $device
    "gpuCount" $gpuCount
    "weights" $m.weights
    "imageRef" (include "vision-predictors.imageRef" (dict "image" $image "defaultTag" $root.Chart.AppVersion))
    "pullPolicy" $image.pullPolicy
    "resources" $resources
    "settings" $settings
    "autoscaling" $autoscaling
    "jobs" $jobs
    "jobsScaling" $jobsScaling
    "scaledObject" $scaledObject
    "probes" $probes
    "nodeSelector" (ternary $m.nodeSelector $pool.nodeSelector (hasKey $m "nodeSelector"))
    "tolerations" (ternary $m.tolerations $pool.tolerations (hasKey $m "tolerations"))
    "affinity" $affinity
    "canary" $canary
    "track" (ternary "" "stable" (eq (include "vision-predictors.isKnative" $root) "true"))) }}
{{- end }}
{{- end }}
{{- toYaml (dict "units" $units) }}
{{- end }}

{{/* The canary variant of a unit: image, weights and settings replaced. Args: unit (dict).
     Knative pods carry no track (empty): there the canary spec becomes the stable spec on promotion,
     and any label difference would start one more revision; Knative's serving.knative.dev/revision
     label tells the versions apart instead. */}}
{{- define "vision-predictors.canaryUnit" -}}
{{- $c := deepCopy . }}
{{- $_ := set $c "imageRef" .canary.imageRef }}
{{- $_ := set $c "weights" .canary.weights }}
{{- $_ := set $c "settings" .canary.settings }}
{{- $_ := set $c "track" (ternary "canary" "" (ne .track "")) }}
{{- toYaml $c }}
{{- end }}

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

{{/* true when the pods run under Knative (no terminationGracePeriod/preStop/second port). */}}
{{- define "vision-predictors.isKnative" -}}
{{- if and (eq .Values.mode "kserve") (eq .Values.kserve.deploymentMode "Knative") }}true{{ end }}
{{- end }}

{{/* Directory the server loads the weights from. */}}
{{- define "vision-predictors.modelDir" -}}
{{- if .weights.path }}{{ .weights.path }}{{ else }}/mnt/models{{ end }}
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

{{/* HPA behavior of the chart's HPAs and ScaledObjects: model loads are expensive, so scale down one
     pod a minute after a stabilization window, up by two. Args: root. */}}
{{- define "vision-predictors.hpaBehavior" -}}
scaleDown:
  stabilizationWindowSeconds: {{ .Values.autoscaling.scaleDownStabilizationSeconds }}
  policies:
    - type: Pods
      value: 1
      periodSeconds: 60
scaleUp:
  stabilizationWindowSeconds: 0
  policies:
    - type: Pods
      value: 2
      periodSeconds: 60
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

{{/* Replace {{ unit }} / {{ key }} / {{ model }} / {{ namespace }} placeholders. Args: dict s unit root. */}}
{{- define "vision-predictors.placeholders" -}}
{{- .s | replace "{{ unit }}" .unit.name | replace "{{ key }}" .unit.key | replace "{{ model }}" .unit.predictor | replace "{{ namespace }}" .root.Release.Namespace }}
{{- end }}

{{/* NetworkPolicy egress rule to cluster DNS (one list item). Args: root. */}}
{{- define "vision-predictors.dnsEgress" -}}
{{- $dns := .Values.networkPolicy.egress.dns -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $dns.namespace }}
      {{- with $dns.podLabels }}
      podSelector:
        matchLabels:
          {{- toYaml . | nindent 10 }}
      {{- end }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
