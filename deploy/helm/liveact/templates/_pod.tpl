{{/*
Pieces of the three LiveAct pod specs. Each takes (dict "root" $ "c" <component values> ...).
*/}}

{{/* Container resources plus the GPU extended resource (requests = limits, as extended resources require). */}}
{{- define "liveact.resources" -}}
{{- $res := deepCopy (default (dict) .c.resources) }}
{{- if .gpus }}
{{- $limits := default (dict) $res.limits }}
{{- $requests := default (dict) $res.requests }}
{{- $_ := set $limits .c.gpu.resourceName (int .gpus) }}
{{- $_ := set $requests .c.gpu.resourceName (int .gpus) }}
{{- $_ := set $res "limits" $limits }}
{{- $_ := set $res "requests" $requests }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* Affinity: the component's own, plus required node affinity on the GPU product label when it uses GPUs. */}}
{{- define "liveact.affinity" -}}
{{- $aff := deepCopy (default (dict) .c.affinity) }}
{{- if and .gpus .c.gpu.products }}
{{- $term := dict "matchExpressions" (list (dict "key" .c.gpu.productLabel "operator" "In" "values" .c.gpu.products)) }}
{{- $products := dict "nodeAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (dict "nodeSelectorTerms" (list $term))) }}
{{- $aff = merge $aff $products }}
{{- end }}
{{- if $aff }}
{{- toYaml $aff }}
{{- end }}
{{- end }}

{{/* Scheduling fields shared by the pods: node selector, affinity, tolerations, spread, runtime class. */}}
{{- define "liveact.scheduling" -}}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (include "liveact.affinity" .) }}
affinity:
  {{- . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  - {{ toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" (include "liveact.selectorLabels" $ | fromYaml)))) | nindent 4 | trim }}
  {{- end }}
{{- end }}
{{- with .c.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- end }}

{{/*
gRPC probes on the container port. `service` is the health name readiness asks for; liveness and
startup ask for "" (the whole server). Native gRPC probes need a port number, not a name.
*/}}
{{- define "liveact.probes" -}}
{{- $p := .c.probes }}
startupProbe:
  grpc:
    port: {{ int .c.port }}
    service: ""
  periodSeconds: {{ $p.startup.periodSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
readinessProbe:
  grpc:
    port: {{ int .c.port }}
    service: {{ .service | quote }}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
livenessProbe:
  grpc:
    port: {{ int .c.port }}
    service: ""
  periodSeconds: {{ $p.liveness.periodSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
{{- end }}

{{/*
preStop: sleep before the kubelet sends SIGTERM. Deleting a pod removes it from the Service
endpoints while the preStop hook runs; clients and kube-proxy need a few seconds to see that.
SIGTERM then starts the server's own drain (services/common/server.py: NOT_SERVING at once, then
--grace-s for in-flight streams; the generator checkpoints each session and ends it with
SessionEnd.resume). The native `sleep` action needs no shell in the image.
*/}}
{{- define "liveact.lifecycle" -}}
{{- if .c.drain.preStopSleepSeconds }}
lifecycle:
  preStop:
    sleep:
      seconds: {{ int .c.drain.preStopSleepSeconds }}
{{- end }}
{{- end }}

{{/* Environment every LiveAct server reads (services/common/settings.py: flag --x-y = LIVEACT_X_Y). */}}
{{- define "liveact.serverEnv" -}}
- name: LIVEACT_HOST
  value: {{ .root.Values.listenHost | quote }}
- name: LIVEACT_PORT
  value: {{ int .c.port | quote }}
- name: LIVEACT_GRACE_S
  value: {{ .c.drain.graceSeconds | quote }}
- name: LIVEACT_LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: LIVEACT_REFLECTION
  value: {{ .root.Values.reflection | quote }}
- name: LIVEACT_DEVICE
  value: {{ ternary "cuda" "cpu" (gt (int .gpus) 0) | quote }}
# the root filesystem is read-only: caches (torch, Hugging Face) go to the /tmp emptyDir
- name: HOME
  value: /tmp
{{- include "liveact.telemetryEnv" . }}
{{- end }}

{{/*
Telemetry of every LiveAct server (services/common/telemetry.py): the OTLP export, the Prometheus port,
and the pod's OpenTelemetry resource from the downward API (the SDK reads OTEL_RESOURCE_ATTRIBUTES;
$(VAR) expands variables defined above it). The generator adds LIVEACT_TRACE_RATIO.
*/}}
{{- define "liveact.telemetryEnv" -}}
{{- $t := .root.Values.telemetry }}
{{- if $t.otlpEndpoint }}
- name: LIVEACT_OTEL_ENDPOINT
  value: {{ $t.otlpEndpoint | quote }}
- name: LIVEACT_OTEL_EXPORT_S
  value: {{ $t.exportIntervalSeconds | quote }}
{{- end }}
{{- if $t.metrics.enabled }}
- name: LIVEACT_METRICS_PORT
  value: {{ int $t.metrics.port | quote }}
{{- end }}
{{- if or $t.otlpEndpoint $t.metrics.enabled }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.node.name=$(NODE_NAME),k8s.deployment.name=%s,service.namespace=%s" (include "liveact.componentName" .) .root.Release.Namespace | quote }}
{{- end }}
{{- end }}

{{/* Container ports: gRPC, and Prometheus /metrics when `telemetry.metrics.enabled`. */}}
{{- define "liveact.ports" -}}
- name: grpc
  containerPort: {{ int .c.port }}
  protocol: TCP
{{- if .root.Values.telemetry.metrics.enabled }}
- name: metrics
  containerPort: {{ int .root.Values.telemetry.metrics.port }}
  protocol: TCP
{{- end }}
{{- end }}

{{/*
Pod annotations: the component's `podAnnotations`, plus the prometheus.io/* scrape annotations (honoured
by the usual Prometheus `kubernetes_sd` pod job) when metrics are on; the component's own win.
*/}}
{{- define "liveact.podAnnotations" -}}
{{- $annotations := deepCopy (default (dict) .c.podAnnotations) }}
{{- $m := .root.Values.telemetry.metrics }}
{{- if $m.enabled }}
{{- $scrape := dict "prometheus.io/scrape" "true" "prometheus.io/port" (toString (int $m.port)) "prometheus.io/path" "/metrics" }}
{{- $annotations = merge $annotations $scrape }}
{{- end }}
{{- with $annotations }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes: /tmp, and the weights when the preset needs them. */}}
{{- define "liveact.volumes" -}}
- name: tmp
  emptyDir: {}
{{- $w := .root.Values.model.weights }}
{{- if ne $w.source "none" }}
- name: weights
  {{- if eq $w.source "pvc" }}
  persistentVolumeClaim:
    claimName: {{ include "liveact.componentName" (dict "root" .root "component" "weights") }}
    readOnly: true
  {{- else if eq $w.source "existingClaim" }}
  persistentVolumeClaim:
    claimName: {{ $w.existingClaim }}
    readOnly: true
  {{- else if eq $w.source "hostPath" }}
  hostPath:
    path: {{ $w.hostPath.path }}
    type: {{ $w.hostPath.type }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "liveact.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if ne .root.Values.model.weights.source "none" }}
- name: weights
  mountPath: {{ .root.Values.model.weights.mountPath }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod-level fields shared by the three Deployments. */}}
{{- define "liveact.podCommon" -}}
serviceAccountName: {{ include "liveact.serviceAccountName" .root }}
automountServiceAccountToken: {{ .root.Values.serviceAccount.automount }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ int .c.terminationGracePeriodSeconds }}
{{- end }}
