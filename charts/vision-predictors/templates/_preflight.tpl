{{/*
Preflight: every combination of values the chart refuses, with the reason, in one place. The JSON schema
(values.schema.json) refuses what one value alone gets wrong; these are the rules across values, and
what KServe, Knative or KEDA would refuse or run wrongly (docs/kubernetes-checks.md compares them with
their code).
*/}}

{{/* One model's rules, on its resolved values (vision-predictors.units). Args: dict root key name model
     knative device gpuCount autoscaling canary jobs jobsScaling scaledObject. */}}
{{- define "vision-predictors.preflight.unit" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $kmode := $v.kserve.deploymentMode }}
{{- $key := .key }}
{{- $name := .name }}
{{- $m := .model }}
{{- $knative := .knative }}
{{- $device := .device }}
{{- $gpuCount := .gpuCount }}
{{- $autoscaling := .autoscaling }}
{{- $canary := .canary }}
{{- $jobs := .jobs }}
{{- $jobsScaling := .jobsScaling }}
{{- $scaledObject := .scaledObject }}
{{- if gt (len $name) 45 }}
{{- fail (printf "unit name %q is %d characters; the limit is 45 (KServe/Knative derive longer names from it): shorten the release name (or fullnameOverride) or the models key" $name (len $name)) }}
{{- end }}
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
{{- end }}

{{/* The Redis connection's values (vision-predictors.jobs.connection). Args: root. */}}
{{- define "vision-predictors.preflight.jobsConnection" -}}
{{- $r := .Values.jobs.redis }}
{{- if $r.url }}
{{- if contains ":" (urlParse $r.url).userinfo }}
{{- fail "jobs.redis.url carries a password, which would be rendered in plain text (pod env, KEDA trigger): put the URL in a Secret and set jobs.redis.existingSecret (and jobs.redis.passwordKey for KEDA)" }}
{{- end }}
{{- if or $r.address $r.tls $r.databaseIndex $r.username $r.passwordKey }}
{{- fail "jobs.redis.address, tls, databaseIndex, username and passwordKey are for jobs.redis.existingSecret; with jobs.redis.url the chart reads them from the URL" }}
{{- end }}
{{- else if not $r.address }}
{{- fail "jobs.redis.existingSecret: set jobs.redis.address (host:port of Redis, and tls, databaseIndex, username as in the Secret's URL): KEDA's redis-streams scaler and the NetworkPolicy cannot read the Secret's URL" }}
{{- end }}
{{- end }}

{{/* The jobs trigger's authentication (vision-predictors.jobs.authenticationRef). Args: root. */}}
{{- define "vision-predictors.preflight.jobsAuthentication" -}}
{{- if and .Values.jobs.keda.authenticationRef.name .Values.jobs.redis.passwordKey }}
{{- fail "jobs.redis.passwordKey and jobs.keda.authenticationRef: choose one (your TriggerAuthentication then provides the password)" }}
{{- end }}
{{- end }}
