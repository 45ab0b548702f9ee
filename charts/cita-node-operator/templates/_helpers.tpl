{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "cita-node-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name, the base of every object name. A release named like
the chart (the README's `helm install cita-node-operator ...`) is not doubled.
*/}}
{{- define "cita-node-operator.fullname" -}}
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

{{- define "cita-node-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cita-node-operator.labels" -}}
helm.sh/chart: {{ include "cita-node-operator.chart" . }}
{{ include "cita-node-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cita-cloud
{{- end }}

{{/* Selector labels: fixed for the life of a release (Deployment selectors are immutable). */}}
{{- define "cita-node-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cita-node-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cita-node-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cita-node-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cita-node-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The Jobs' image. The original project's .../cita-node-job repository is refused:
the operator would replace it on every operation (its binary stops and starts
nodes itself, with an API token this chart never gives to Job pods).
*/}}
{{- define "cita-node-operator.jobImage" -}}
{{- if eq (last (splitList "/" .Values.jobImage.repository)) "cita-node-job" }}
{{- fail "jobImage.repository names the original project's cita-node-job image, which cannot run with this operator: use this project's job image (e.g. ghcr.io/cita-cloud/cita-node-operator-job)" }}
{{- end }}
{{- printf "%s:%s" .Values.jobImage.repository (default .Chart.AppVersion .Values.jobImage.tag) }}
{{- end }}

{{/* The binding subject: the operator's ServiceAccount. */}}
{{- define "cita-node-operator.subject" -}}
- kind: ServiceAccount
  name: {{ include "cita-node-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
The plural resource names of the operation kinds, the chart's one list of
them: the operations' RBAC rules and the finalizer policy both take it.
One per operation CRD in crds/ (test/packaging fails when the two differ).
A YAML list: `include "cita-node-operator.operationResources" . | fromYamlArray`.
*/}}
{{- define "cita-node-operator.operationResources" -}}
- blockheightfallbacks
- backups
- snapshots
- restores
- switchovers
- changeowners
{{- end }}
