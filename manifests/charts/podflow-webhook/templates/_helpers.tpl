{{/* The name of every object of the release. */}}
{{- define "podflow-webhook.fullname" -}}
{{- printf "%s-podflow-webhook" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "podflow-webhook.labels" -}}
app.kubernetes.io/name: podflow-webhook
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: podflow
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "podflow-webhook.selectorLabels" -}}
app.kubernetes.io/name: podflow-webhook
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "podflow-webhook.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* The Secret holding tls.crt and tls.key: ours, or the one cert-manager writes. */}}
{{- define "podflow-webhook.tlsSecret" -}}
{{- printf "%s-tls" (include "podflow-webhook.fullname" .) -}}
{{- end -}}

{{/* The collector host, in brackets when it is an IPv6 address. */}}
{{- define "podflow-webhook.collectorHost" -}}
{{- if contains ":" .Values.collector.address -}}
{{- printf "[%s]" .Values.collector.address -}}
{{- else -}}
{{- .Values.collector.address -}}
{{- end -}}
{{- end -}}
