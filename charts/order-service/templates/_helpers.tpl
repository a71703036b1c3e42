{{- define "order-service.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "order-service.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "order-service.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "order-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "order-service.selector" -}}
app.kubernetes.io/name: {{ include "order-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "order-service.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "order-service.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "order-service.fullname" .)) -}}
{{- end -}}

{{- define "order-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "order-service.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by every container: ConfigMap plus the secret keys. */}}
{{- define "order-service.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "order-service.fullname" . }}-config
env:
  - name: DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ include "order-service.secretName" . }}
        key: DATABASE_URL
  - name: JWT_SECRET
    valueFrom:
      secretKeyRef:
        name: {{ include "order-service.secretName" . }}
        key: JWT_SECRET
        optional: true
  - name: JWT_PUBLIC_KEY
    valueFrom:
      secretKeyRef:
        name: {{ include "order-service.secretName" . }}
        key: JWT_PUBLIC_KEY
        optional: true
{{- end -}}
