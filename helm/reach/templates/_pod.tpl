{{/* The pod of both modes: the StatefulSet (sled) and the Deployment (redis). */}}
{{- define "reach.podTemplate" -}}
metadata:
  labels:
    {{- include "reach.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Rolls the pod when the config or the token list changes.
    checksum/config: {{ include "reach.config" . | sha256sum }}
    checksum/tokens: {{ toJson .Values.auth | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    fsGroupChangePolicy: OnRootMismatch
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: reach
      image: {{ include "reach.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - serve
        - --config
        - /etc/reach/config.json
        {{- if .Values.insecure }}
        - --insecure
        {{- end }}
      {{- if or (include "reach.authEnabled" .) .Values.store.redis.existingSecret (and .Values.webhooks.enabled .Values.webhooks.existingSecret) }}
      env:
        {{- if include "reach.authEnabled" . }}
        - name: REACH_AUTH__TOKENS
          valueFrom:
            secretKeyRef:
              name: {{ include "reach.tokensSecret" . }}
              key: tokens
        {{- end }}
        {{- if and .Values.webhooks.enabled .Values.webhooks.existingSecret }}
        # Tenants, URL secret hashes and providers' signing keys.
        - name: REACH_WEBHOOKS__ENDPOINTS
          valueFrom:
            secretKeyRef:
              name: {{ .Values.webhooks.existingSecret }}
              key: endpoints
        {{- end }}
        {{- if and (eq .Values.store.backend "redis") .Values.store.redis.existingSecret }}
        # Node URLs with credentials, as an inline TOML array.
        - name: REACH_STORE__REDIS__NODES
          valueFrom:
            secretKeyRef:
              name: {{ .Values.store.redis.existingSecret }}
              key: nodes
        {{- end }}
      {{- end }}
      ports:
        - name: grpc
          containerPort: {{ .Values.service.grpcPort }}
        - name: admin
          containerPort: {{ .Values.service.adminPort }}
        {{- if .Values.webhooks.enabled }}
        - name: webhooks
          containerPort: {{ .Values.webhooks.port }}
        {{- end }}
      {{- if .Values.tls.enabled }}
      # Kubelet's gRPC probes speak no TLS: the admin port answers instead.
      startupProbe:
        httpGet: { path: /readyz, port: admin }
        periodSeconds: {{ .Values.probes.startup.periodSeconds }}
        failureThreshold: {{ .Values.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet: { path: /livez, port: admin }
        periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
        failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet: { path: /readyz, port: admin }
        periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
        failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
      {{- else }}
      # Native gRPC probes against grpc.health.v1 (open without a token).
      startupProbe:
        grpc: { port: {{ .Values.service.grpcPort }} }
        periodSeconds: {{ .Values.probes.startup.periodSeconds }}
        failureThreshold: {{ .Values.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet: { path: /livez, port: admin }
        periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
        failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
      readinessProbe:
        grpc: { port: {{ .Values.service.grpcPort }} }
        periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
        failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: [ALL]
      volumeMounts:
        - name: data
          mountPath: /var/lib/reach
        - name: config
          mountPath: /etc/reach/config.json
          subPath: config.json
          readOnly: true
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: /etc/reach/tls
          readOnly: true
        {{- end }}
  volumes:
    {{- if eq .Values.store.backend "redis" }}
    # Nothing is stored locally on Redis: a scratch directory only.
    - name: data
      emptyDir: {}
    {{- end }}
    - name: config
      configMap:
        name: {{ include "reach.fullname" . }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ .Values.tls.secretName }}
        defaultMode: 0400
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
