{{/*
Render-time checks of what values.schema.json cannot express (relations between values). Each
problem is one line naming the values and what to do; all are reported at once. Invoked from
templates/validate.yaml, so `helm template`, `helm install` and `helm lint` all stop on them.
*/}}
{{- define "liveact.validateValues" -}}
{{- $problems := list }}
{{- $problems = concat $problems (include "liveact.validate.tensorParallel" . | fromYamlArray) }}
{{- $problems = concat $problems (include "liveact.validate.drain" . | fromYamlArray) }}
{{- $problems = concat $problems (include "liveact.validate.model" . | fromYamlArray) }}
{{- $problems = concat $problems (include "liveact.validate.redis" . | fromYamlArray) }}
{{- $problems = concat $problems (include "liveact.validate.redisMemory" . | fromYamlArray) }}
{{- $problems = concat $problems (include "liveact.validate.exposure" . | fromYamlArray) }}
{{- $problems = concat $problems (include "liveact.validate.telemetry" . | fromYamlArray) }}
{{- if $problems }}
{{- fail (printf "\n\nLIVEACT VALUES ERROR:\n  - %s\n" ($problems | join "\n  - ")) }}
{{- end }}
{{- end }}

{{- define "liveact.validate.tensorParallel" -}}
{{- $tp := .Values.generator.tensorParallel }}
{{- $preset := include "liveact.preset" . | fromYaml }}
{{- $out := list }}
{{- if or (lt (int $tp) 1) (ne (toString (int $tp)) (toString $tp)) }}
{{- $out = append $out (printf "generator.tensorParallel %v must be an integer >= 1 (GPUs, one tensor-parallel rank each, in one pod)" $tp) }}
{{- else if ne (mod (int $preset.heads) (int $tp)) 0 }}
{{- $out = append $out (printf "generator.tensorParallel %d must divide the %d attention heads of preset %s (the DiT is sharded by heads)" (int $tp) (int $preset.heads) .Values.model.preset) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* terminationGracePeriodSeconds counts from the preStop hook: it must cover preStop + the drain. */}}
{{- define "liveact.validate.drain" -}}
{{- $out := list }}
{{- range $key := list "generator" "audioEncoder" "decoder" }}
{{- $c := index $.Values $key }}
{{- $needed := add (int $c.drain.preStopSleepSeconds) (int $c.drain.graceSeconds) }}
{{- if le (int $c.terminationGracePeriodSeconds) $needed }}
{{- $out = append $out (printf "%s.terminationGracePeriodSeconds %d must be longer than %s.drain.preStopSleepSeconds + %s.drain.graceSeconds = %d, or the kubelet kills the pod before its drain (--grace-s) ends and sessions are lost" $key (int $c.terminationGracePeriodSeconds) $key $key $needed) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{- define "liveact.validate.model" -}}
{{- $w := .Values.model.weights }}
{{- $out := list }}
{{- if and (ne .Values.model.preset "tiny") (eq $w.source "none") }}
{{- $out = append $out (printf "model.preset %s loads its weights from a local directory: set model.weights.source to pvc, existingClaim or hostPath" .Values.model.preset) }}
{{- end }}
{{- if and (eq $w.source "existingClaim") (not $w.existingClaim) }}
{{- $out = append $out "model.weights.source is existingClaim: set model.weights.existingClaim to the claim's name" }}
{{- end }}
{{- if and (eq $w.source "hostPath") (not (hasPrefix "/" $w.hostPath.path)) }}
{{- $out = append $out "model.weights.source is hostPath: set model.weights.hostPath.path to an absolute directory on the nodes" }}
{{- end }}
{{- if and (not .Values.generator.gpu.enabled) (ne .Values.model.preset "tiny") }}
{{- $out = append $out (printf "generator.gpu.enabled is false: the DiT of %s needs GPUs (only the tiny preset runs on CPU)" .Values.model.preset) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{- define "liveact.validate.redis" -}}
{{- $r := .Values.redis }}
{{- $ext := $r.external }}
{{- $external := or $ext.url $ext.existingSecret }}
{{- $out := list }}
{{- if and $r.bundled.enabled $external }}
{{- $out = append $out "redis: both redis.bundled.enabled and redis.external (url or existingSecret) are set: configure exactly one (set redis.bundled.enabled=false to use the external Redis)" }}
{{- else if not (or $r.bundled.enabled $external) }}
{{- $out = append $out "redis: neither redis.bundled.enabled nor redis.external.url / redis.external.existingSecret is set: configure exactly one (sessions are checkpointed there)" }}
{{- end }}
{{- if and $ext.url $ext.existingSecret }}
{{- $out = append $out "redis.external: set url or existingSecret (the URL from a Secret), not both" }}
{{- end }}
{{- if and $ext.url (not (regexMatch "^rediss?://[^/]+" $ext.url)) }}
{{- $out = append $out (printf "redis.external.url %q must be redis://host:port[/db] or rediss://host:port[/db] (TLS)" $ext.url) }}
{{- end }}
{{- if and $external $ext.cluster $ext.url (regexMatch "^rediss?://[^/]+/([1-9][0-9]*)$" $ext.url) }}
{{- $out = append $out (printf "redis.external.url %q: Redis Cluster has only database 0; drop the /N (or set cluster false)" $ext.url) }}
{{- end }}
{{- if and $ext.auth.password $ext.auth.existingSecret }}
{{- $out = append $out "redis.external.auth: set password or existingSecret, not both" }}
{{- end }}
{{- if and $ext.auth.username (not (or $ext.auth.password $ext.auth.existingSecret)) }}
{{- $out = append $out "redis.external.auth.username is set without a password: set redis.external.auth.existingSecret (or password)" }}
{{- end }}
{{- if and $ext.tls.clientCert (not $ext.tls.existingSecret) }}
{{- $out = append $out "redis.external.tls.clientCert needs redis.external.tls.existingSecret with tls.crt and tls.key" }}
{{- end }}
{{- if and $ext.tls.existingSecret (not (or $ext.tls.enabled (hasPrefix "rediss://" $ext.url))) }}
{{- $out = append $out "redis.external.tls.existingSecret is set but TLS is off: set redis.external.tls.enabled=true (or a rediss:// url)" }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{- define "liveact.validate.exposure" -}}
{{- $out := list }}
{{- $hpa := .Values.generator.autoscaling }}
{{- if and $hpa.enabled (gt (int $hpa.minReplicas) (int $hpa.maxReplicas)) }}
{{- $out = append $out (printf "generator.autoscaling.minReplicas %d must not exceed maxReplicas %d" (int $hpa.minReplicas) (int $hpa.maxReplicas)) }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- $out = append $out "ingress.enabled: set ingress.hosts (gRPC routing is by host; every path goes to the generator)" }}
{{- end }}
{{- if and .Values.gateway.enabled (not .Values.gateway.parentRefs) }}
{{- $out = append $out "gateway.enabled: set gateway.parentRefs to the Gateway(s) the GRPCRoute attaches to" }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{- define "liveact.validate.telemetry" -}}
{{- $t := .Values.telemetry }}
{{- $out := list }}
{{- if and .Values.generator.autoscaling.enabled (not $t.metrics.enabled) }}
{{- $out = append $out (printf "generator.autoscaling.enabled needs telemetry.metrics.enabled=true: the HPA scales on %s, which the generator exports at /metrics for Prometheus and a custom-metrics adapter" .Values.generator.autoscaling.metricName) }}
{{- end }}
{{- if $t.metrics.enabled }}
{{- range $key := list "generator" "audioEncoder" "decoder" }}
{{- if eq (int (index $.Values $key).port) (int $t.metrics.port) }}
{{- $out = append $out (printf "telemetry.metrics.port %d is also %s.port: use another port for /metrics" (int $t.metrics.port) $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $t.otlpEndpoint (not (regexMatch "^https?://[^/]+" $t.otlpEndpoint)) }}
{{- $out = append $out (printf "telemetry.otlpEndpoint %q must be http://host:port or https://host:port (the collector's OTLP/gRPC port, usually 4317)" $t.otlpEndpoint) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* A bundled Redis must hold every session's checkpoints: maxSessions x the most generator pods. With
noeviction a full Redis refuses writes (sessions go on uncheckpointed), so this is checked up front. */}}
{{- define "liveact.validate.redisMemory" -}}
{{- $r := .Values.redis.bundled }}
{{- $g := .Values.generator }}
{{- $out := list }}
{{- if $r.enabled }}
{{- $preset := include "liveact.preset" . | fromYaml }}
{{- $size := $g.maxSize | default $preset.size }}
{{- $kv := ternary "fp8" "model" (eq $g.kvCache "fp8") }}
{{- $key := printf "%s/%s" $kv $size }}
{{- $per := index $preset.redisSessionBytes $key }}
{{- $units := dict "b" 1 "kb" 1024 "mb" 1048576 "gb" 1073741824 }}
{{- $parts := regexFindAll "^[0-9]+|[a-z]+$" (lower (toString $r.maxmemory)) -1 }}
{{- $have := mul (int64 (first $parts)) (int64 (get $units (ternary (last $parts) "b" (eq (len $parts) 2)))) }}
{{- $pods := ternary $g.autoscaling.maxReplicas $g.replicas $g.autoscaling.enabled }}
{{- $sessions := mul (int $g.maxSessions) (int $pods) }}
{{- if not $per }}
{{- $out = append $out (printf "redis.bundled: no Redis figure for preset %s at %s with kvCache %s (known: %s): use a listed generator.maxSize, or redis.external sized with `liveact plan`" .Values.model.preset $size $g.kvCache (keys $preset.redisSessionBytes | sortAlpha | join ", ")) }}
{{- else if lt $have (mul (int64 $per) $sessions) }}
{{- $out = append $out (printf "redis.bundled.maxmemory %s (%.1f GiB) cannot hold %d sessions (generator.maxSessions %d x %d generator pods) of %s at %s, kvCache %s: each needs up to %.2f GiB of checkpoints (liveact plan: shared sink slots and conditioning, 2 versions and the one being written), %.1f GiB in all; raise redis.bundled.maxmemory (and the Redis pod's memory) or use redis.external" (toString $r.maxmemory) (divf $have 1073741824.0) $sessions (int $g.maxSessions) (int $pods) .Values.model.preset $size $g.kvCache (divf $per 1073741824.0) (divf (mul (int64 $per) $sessions) 1073741824.0)) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}
