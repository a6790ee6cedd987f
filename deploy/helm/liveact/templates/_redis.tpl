{{/*
The generator's Redis settings (services/generator/settings.py: --redis-url, --redis-password,
--redis-username, --redis-cluster, --redis-tls, --redis-tls-ca-file, --redis-tls-cert-file, --redis-tls-key-file),
as LIVEACT_* environment variables. Secrets stay in Secrets: the password is never a flag.
*/}}
{{- define "liveact.redis.env" -}}
{{- $r := .Values.redis }}
{{- if $r.bundled.enabled }}
- name: LIVEACT_REDIS_URL
  value: {{ printf "redis://%s.%s.svc:%s/0" (include "liveact.redis.bundledName" .) .Release.Namespace (include "liveact.redis.port" .) | quote }}
- name: LIVEACT_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "liveact.redis.bundledSecret" . }}
      key: {{ $r.bundled.existingSecretPasswordKey }}
{{- else }}
{{- $ext := $r.external }}
- name: LIVEACT_REDIS_URL
  {{- if $ext.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ $ext.existingSecret }}
      key: {{ $ext.existingSecretUrlKey }}
  {{- else }}
  value: {{ $ext.url | quote }}
  {{- end }}
{{- if or $ext.auth.existingSecret $ext.auth.password }}
- name: LIVEACT_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default (include "liveact.redis.externalSecret" .) $ext.auth.existingSecret }}
      key: {{ $ext.auth.passwordKey }}
{{- end }}
{{- with $ext.auth.username }}
- name: LIVEACT_REDIS_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if $ext.cluster }}
- name: LIVEACT_REDIS_CLUSTER
  value: "true"
{{- end }}
{{- if $ext.tls.enabled }}
- name: LIVEACT_REDIS_TLS
  value: "true"
{{- end }}
{{- if $ext.tls.existingSecret }}
{{- if $ext.tls.caKey }}
- name: LIVEACT_REDIS_TLS_CA_FILE
  value: {{ printf "%s/%s" (include "liveact.redis.tlsDir" .) $ext.tls.caKey | quote }}
{{- end }}
{{- if $ext.tls.clientCert }}
- name: LIVEACT_REDIS_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" (include "liveact.redis.tlsDir" .) | quote }}
- name: LIVEACT_REDIS_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" (include "liveact.redis.tlsDir" .) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
