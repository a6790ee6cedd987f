{{/*
Deployment of a service the generator calls (audio encoder, decoder): stateless per stream, own
replicas and Service, GPU optional. (dict "root" $ "c" <values> "component" <name> "gpus" <n>
"service" <health name> "env" <extra env YAML>)
*/}}
{{- define "liveact.peerDeployment" -}}
{{- $c := .c }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "liveact.componentName" . }}
  labels:
    {{- include "liveact.labels" . | nindent 4 }}
spec:
  replicas: {{ int $c.replicas }}
  selector:
    matchLabels:
      {{- include "liveact.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "liveact.labels" . | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with (include "liveact.podAnnotations" .) }}
      annotations:
        {{- . | nindent 8 }}
      {{- end }}
    spec:
      {{- include "liveact.podCommon" . | nindent 6 }}
      {{- with (include "liveact.scheduling" . | trim) }}
      {{- . | nindent 6 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "liveact.image" (dict "root" .root "image" $c.image) }}
          imagePullPolicy: {{ include "liveact.imagePullPolicy" (dict "root" .root "image" $c.image) }}
          command:
            {{- toYaml $c.command | nindent 12 }}
          {{- with $c.extraArgs }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            {{- include "liveact.ports" . | nindent 12 }}
          env:
            {{- include "liveact.serverEnv" . | nindent 12 }}
            - name: LIVEACT_MAX_STREAMS
              value: {{ int $c.maxStreams | quote }}
            {{- .env | trim | nindent 12 }}
            {{- with $c.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with (include "liveact.probes" . | trim) }}
          {{- . | nindent 10 }}
          {{- end }}
          {{- with (include "liveact.lifecycle" . | trim) }}
          {{- . | nindent 10 }}
          {{- end }}
          resources:
            {{- include "liveact.resources" . | nindent 12 }}
          securityContext:
            {{- toYaml .root.Values.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "liveact.volumeMounts" . | nindent 12 }}
      volumes:
        {{- include "liveact.volumes" . | nindent 8 }}
{{- end }}

{{/* ClusterIP Service of one component on its gRPC port. */}}
{{- define "liveact.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "liveact.componentName" . }}
  labels:
    {{- include "liveact.labels" . | nindent 4 }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ default "ClusterIP" .type }}
  selector:
    {{- include "liveact.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ int .c.port }}
      targetPort: grpc
      protocol: TCP
      # tells meshes and gateways the port speaks HTTP/2 (gRPC)
      appProtocol: grpc
{{- end }}

{{/* PodDisruptionBudget of one component. */}}
{{- define "liveact.pdb" -}}
{{- if .c.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "liveact.componentName" . }}
  labels:
    {{- include "liveact.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .c.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "liveact.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}
