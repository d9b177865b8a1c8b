{{/*
Value resolution: every enabled model merged with the global defaults (`units`), its canary variant, and
what templates derive from the values. Every refusal of a combination of values is in _preflight.tpl.
*/}}

{{/*
Resolved models: every enabled entry of .Values.models merged with the global defaults, sorted by
key, as YAML {units: [...]}. Templates use:
  {{- range (include "vision-predictors.units" . | fromYaml).units }}
The cross-field rules the JSON schema cannot express are checked for each (_preflight.tpl).
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
{{- include "vision-predictors.preflight.unit" (dict "root" $root "key" $key "name" $name "model" $m "knative" $knative "device" $device "gpuCount" $gpuCount "autoscaling" $autoscaling "canary" $canary "jobs" $jobs "jobsScaling" $jobsScaling "scaledObject" $scaledObject) }}
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

{{/* true when the pods run under Knative (no terminationGracePeriod/preStop/second port). */}}
{{- define "vision-predictors.isKnative" -}}
{{- if and (eq .Values.mode "kserve") (eq .Values.kserve.deploymentMode "Knative") }}true{{ end }}
{{- end }}

{{/* Directory the server loads the weights from. */}}
{{- define "vision-predictors.modelDir" -}}
{{- if .weights.path }}{{ .weights.path }}{{ else }}/mnt/models{{ end }}
{{- end }}

{{/* Replace {{ unit }} / {{ key }} / {{ model }} / {{ namespace }} placeholders. Args: dict s unit root. */}}
{{- define "vision-predictors.placeholders" -}}
{{- .s | replace "{{ unit }}" .unit.name | replace "{{ key }}" .unit.key | replace "{{ model }}" .unit.predictor | replace "{{ namespace }}" .root.Release.Namespace }}
{{- end }}
