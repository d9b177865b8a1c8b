{{/*
Asynchronous jobs (values `jobs`, models.<key>.jobs): the server's env, the Redis connection in the
parts KEDA and the NetworkPolicy need, and the KEDA redis-streams trigger on a model's stream.
*/}}

{{/* The stream and consumer group of a model's jobs: the server's contract (one stream per model,
     one group). KEDA's trigger must name exactly these, or it watches an empty stream. Args: model. */}}
{{- define "vision-predictors.jobs.stream" -}}
predictors:jobs:{{ . }}
{{- end }}
{{- define "vision-predictors.jobs.group" -}}
predictors
{{- end }}

{{/* Redis connection as YAML {address, port, databaseIndex, tls, username}: parsed from jobs.redis.url,
     or the existingSecret-side values (the Secret's URL is never read by the chart). Args: root. */}}
{{- define "vision-predictors.jobs.connection" -}}
{{- include "vision-predictors.preflight.jobsConnection" . }}
{{- $r := .Values.jobs.redis }}
{{- if $r.url }}
{{- $url := urlParse $r.url }}
{{- /* urlParse has no port: host is hostname[:port] or [ipv6][:port] */}}
{{- $port := trimPrefix ":" (trimPrefix (printf "[%s]" $url.hostname) (trimPrefix $url.hostname $url.host)) | default "6379" }}
{{- $db := trimPrefix "/" $url.path | default "0" }}
{{- /* redis-py reads ?db=N before the path */}}
{{- with regexFind "(^|&)db=[0-9]+" $url.query }}
{{- $db = regexFind "[0-9]+$" . }}
{{- end }}
{{- toYaml (dict
    "address" (ternary $url.host (printf "%s:%s" $url.host $port) (hasSuffix (printf ":%s" $port) $url.host))
    "port" (int $port)
    "databaseIndex" (int $db)
    "tls" (eq $url.scheme "rediss")
    "username" $url.userinfo) }}
{{- else }}
{{- toYaml (dict
    "address" $r.address
    "port" (regexFind "[0-9]+$" $r.address | int)
    "databaseIndex" $r.databaseIndex
    "tls" $r.tls
    "username" $r.username) }}
{{- end }}
{{- end }}

{{/* Server env of a unit whose jobs are on (names from files/settings-env.yaml). Args: root. */}}
{{- define "vision-predictors.jobs.env" -}}
{{- $names := (.Files.Get "files/settings-env.yaml" | fromYaml).jobs }}
{{- $j := .Values.jobs -}}
# The consumer name in each stream's group: one per pod (the server's default reads POD_NAME).
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: {{ $names.url }}
{{- if $j.redis.existingSecret }}
  # The URL holds the password: from the Secret, never rendered.
  valueFrom:
    secretKeyRef:
      name: {{ $j.redis.existingSecret }}
      key: {{ $j.redis.existingSecretKey }}
{{- else }}
  value: {{ $j.redis.url | quote }}
{{- end }}
{{- range $key := keys $names | sortAlpha }}
{{- if ne $key "url" }}
- name: {{ index $names $key }}
  value: {{ index $j $key | int64 | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* KEDA redis-streams trigger on the lag of a model's consumer group (entries no pod has taken yet;
     XINFO GROUPS, Redis >= 7.0). Metadata values are strings (the CRD's map[string]string).
     Args: dict root unit. */}}
{{- define "vision-predictors.jobs.trigger" -}}
{{- $v := .root.Values }}
{{- $conn := include "vision-predictors.jobs.connection" .root | fromYaml }}
{{- $lag := .unit.jobs.keda -}}
- type: redis-streams
  name: jobs-lag
  metadata:
    address: {{ $conn.address | quote }}
    databaseIndex: {{ $conn.databaseIndex | toString | quote }}
    enableTLS: {{ $conn.tls | toString | quote }}
    {{- with $conn.username }}
    username: {{ . | quote }}
    {{- end }}
    stream: {{ include "vision-predictors.jobs.stream" .unit.predictor | quote }}
    consumerGroup: {{ include "vision-predictors.jobs.group" . | quote }}
    lagCount: {{ $lag.lagCount | int64 | toString | quote }}
    activationLagCount: {{ $lag.activationLagCount | int64 | toString | quote }}
  {{- with include "vision-predictors.jobs.authenticationRef" .root | fromYaml }}
  authenticationRef:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* The (Cluster)TriggerAuthentication the jobs trigger uses, as YAML {name, kind}, or nothing: the user's
     keda.authenticationRef, else the chart's <fullname>-redis when a password key is given. Args: root. */}}
{{- define "vision-predictors.jobs.authenticationRef" -}}
{{- include "vision-predictors.preflight.jobsAuthentication" . }}
{{- $j := .Values.jobs }}
{{- if $j.keda.authenticationRef.name }}
{{- toYaml $j.keda.authenticationRef }}
{{- else if $j.redis.passwordKey }}
{{- toYaml (dict "name" (printf "%s-redis" (include "vision-predictors.fullname" .)) "kind" "TriggerAuthentication") }}
{{- end }}
{{- end }}
