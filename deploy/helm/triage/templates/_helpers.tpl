{{/* Names and labels. */}}
{{- define "triage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "triage.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "triage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "triage.labels" -}}
helm.sh/chart: {{ include "triage.chart" . }}
app.kubernetes.io/name: {{ include "triage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: triage
{{- end }}

{{/* Selector labels of one role; call with (dict "root" $ "role" "consumer"). */}}
{{- define "triage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "triage.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "triage.roleLabels" -}}
{{ include "triage.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{/* Resource name of one role: <fullname>-<role>. */}}
{{- define "triage.roleName" -}}
{{- printf "%s-%s" (include "triage.fullname" .root | trunc 50 | trimSuffix "-") .role }}
{{- end }}

{{- define "triage.secretName" -}}
{{- default (include "triage.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "triage.pvcName" -}}
{{- default (printf "%s-shared" (include "triage.fullname" .)) .Values.sharedVolume.persistence.existingClaim }}
{{- end }}

{{/* Whether a role runs on a GPU. */}}
{{- define "triage.gpu" -}}
{{- if and .root.Values.gpu.enabled (has .role .root.Values.gpu.roles) }}true{{ end }}
{{- end }}

{{/* Image of one role: role override, else the CUDA image on GPU roles, else the default. */}}
{{- define "triage.image" -}}
{{- $v := .root.Values }}
{{- $role := index $v .role }}
{{- $repo := $v.image.repository }}
{{- $tag := default .root.Chart.AppVersion $v.image.tag }}
{{- if include "triage.gpu" . }}
{{- $repo = default $repo $v.gpu.image.repository }}
{{- $tag = default (printf "%s%s" $tag $v.gpu.image.tagSuffix) $v.gpu.image.tag }}
{{- end }}
{{- with $role.image }}
{{- $repo = default $repo .repository }}
{{- $tag = default $tag .tag }}
{{- end }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/* The consumer group the consumers join (--group), shared with KEDA's trigger. */}}
{{- define "triage.consumerGroup" -}}
{{- required "consumer.group is required" .Values.consumer.group }}
{{- end }}

{{/* min(keda.maxReplicas, partitions). */}}
{{- define "triage.kedaMaxReplicas" -}}
{{- min (int .Values.keda.maxReplicas) (int (required "partitions is required" .Values.partitions)) }}
{{- end }}
