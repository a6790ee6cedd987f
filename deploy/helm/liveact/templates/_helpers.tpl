{{/*
Names, labels and the facts about presets the templates need.
*/}}

{{/* The chart name (nameOverride wins). */}}
{{- define "liveact.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: release + chart name, or the release alone when it already
contains the chart name. At most 40 characters, so that "<prefix>-audio-encoder" (a Service name)
stays within the 63-character DNS label limit.
*/}}
{{- define "liveact.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The name of one component's resources: (dict "root" $ "component" "generator"). */}}
{{- define "liveact.componentName" -}}
{{- printf "%s-%s" (include "liveact.fullname" .root) .component }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "liveact.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels of every resource: (dict "root" $ "component" "generator"). */}}
{{- define "liveact.labels" -}}
helm.sh/chart: {{ include "liveact.chart" .root }}
{{ include "liveact.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: liveact
{{- end }}

{{/* Selector labels (immutable in a Deployment: never add to them). */}}
{{- define "liveact.selectorLabels" -}}
app.kubernetes.io/name: {{ include "liveact.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The ServiceAccount the pods use. */}}
{{- define "liveact.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "liveact.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
A component's image, `<image.registry>/<repository>:<tag>`: (dict "root" $ "image" .Values.generator.image).
Its empty tag falls back to `image.tag`, then the chart's appVersion.
*/}}
{{- define "liveact.image" -}}
{{- $shared := .root.Values.image }}
{{- $repository := .image.repository }}
{{- with $shared.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" (toString .)) $repository }}
{{- end }}
{{- $tag := default (default .root.Chart.AppVersion $shared.tag) .image.tag }}
{{- printf "%s:%s" $repository (toString $tag) }}
{{- end }}

{{/* A component's pull policy; empty falls back to `image.pullPolicy`. */}}
{{- define "liveact.imagePullPolicy" -}}
{{- default .root.Values.image.pullPolicy .image.pullPolicy }}
{{- end }}

{{/*
Facts about the model presets, from liveact/config.py (tests/deploy/test_helm_chart.py compares them):
the attention head count (the tensor-parallel degree must divide it) and the VAE preset the decoder
runs (--vae-preset).
*/}}
{{- define "liveact.presets" -}}
tiny:
  heads: 4
  vae: tiny
  size: 64x64
  # Redis bytes one session's checkpoints take at most, by "<generator.kvCache>/<size>" (auto = model):
  # `python deploy/helm/redis_sizes.py` (liveact plan's redis_peak_bytes, the largest over tensor-parallel degrees)
  redisSessionBytes:
    model/64x64: 3461288
    fp8/64x64: 1486280
liveact-18b:
  heads: 40
  vae: wan2.1
  size: 416x720
  redisSessionBytes:
    model/416x720: 40295951872
    model/512x512: 35272062280
    model/720x1280: 123911949464
    fp8/416x720: 20797452544
    fp8/512x512: 18206455368
    fp8/720x1280: 63915705432
{{- end }}

{{/* The preset's facts as a dict; fails for an unknown preset. */}}
{{- define "liveact.preset" -}}
{{- $presets := include "liveact.presets" . | fromYaml }}
{{- $p := get $presets .Values.model.preset }}
{{- if not $p }}
{{- fail (printf "model.preset %q is not a LiveAct preset: use one of %s" .Values.model.preset (keys $presets | sortAlpha | join ", ")) }}
{{- end }}
{{- toYaml $p }}
{{- end }}

{{/* The weights directory inside the pods, or "" when the preset's built-in weights are used. */}}
{{- define "liveact.modelDir" -}}
{{- $w := .Values.model.weights }}
{{- if ne $w.source "none" }}
{{- if $w.subPath }}
{{- printf "%s/%s" (trimSuffix "/" $w.mountPath) (trimPrefix "/" $w.subPath) }}
{{- else }}
{{- $w.mountPath }}
{{- end }}
{{- end }}
{{- end }}

{{/* host:port of a component's Service, as the generator dials it: (dict "root" $ "component" "decoder" "port" 50053). */}}
{{- define "liveact.serviceAddress" -}}
{{- printf "%s.%s.svc:%d" (include "liveact.componentName" .) .root.Release.Namespace (int .port) }}
{{- end }}

{{/* The bundled Redis: Service name and the Secret with its password. */}}
{{- define "liveact.redis.bundledName" -}}
{{- include "liveact.componentName" (dict "root" . "component" "redis") }}
{{- end }}

{{- define "liveact.redis.bundledSecret" -}}
{{- default (include "liveact.redis.bundledName" .) .Values.redis.bundled.existingSecret }}
{{- end }}

{{/* The Secret created for `redis.external.auth.password` (values, not an existing Secret). */}}
{{- define "liveact.redis.externalSecret" -}}
{{- printf "%s-redis-external" (include "liveact.fullname" .) }}
{{- end }}

{{/* Redis port of the bundled instance (the Redis default). */}}
{{- define "liveact.redis.port" -}}
6379
{{- end }}

{{/* Where the Redis TLS Secret is mounted in the generator. */}}
{{- define "liveact.redis.tlsDir" -}}
/etc/liveact/redis-tls
{{- end }}
