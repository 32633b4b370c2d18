{{/* Names, labels, and the pieces several templates share. */}}

{{- define "whatsapp-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; pods are FULLNAME-0, FULLNAME-1, ... so it stays short of 63. */}}
{{- define "whatsapp-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "whatsapp-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "whatsapp-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "whatsapp-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "whatsapp-exporter.labels" -}}
helm.sh/chart: {{ include "whatsapp-exporter.chart" . }}
{{ include "whatsapp-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: whatsapp-exporter
{{- end }}

{{- define "whatsapp-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "whatsapp-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "whatsapp-exporter.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Where the pod finds what the chart mounts: side by side, never one inside another (a volume
mounted inside a read-only ConfigMap or Secret volume can fail to start on some runtimes).
*/}}
{{- define "whatsapp-exporter.configDir" -}}/etc/whatsapp-exporter/config{{- end }}
{{- define "whatsapp-exporter.apiKeyFile" -}}/etc/whatsapp-exporter/secret/api-key{{- end }}
{{- define "whatsapp-exporter.webConfigFile" -}}/etc/whatsapp-exporter/web/web-config.yml{{- end }}
{{- define "whatsapp-exporter.tlsDir" -}}/etc/whatsapp-exporter/tls{{- end }}
{{- define "whatsapp-exporter.scrapeAuthDir" -}}/etc/whatsapp-exporter/scrape-auth{{- end }}
{{- define "whatsapp-exporter.dataDir" -}}/var/lib/whatsapp-exporter{{- end }}

{{/* The Secret that holds the API key: the user's, or the one the chart creates; empty: none. */}}
{{- define "whatsapp-exporter.apiKeySecretName" -}}
{{- if .Values.apiKey.existingSecret }}
{{- .Values.apiKey.existingSecret }}
{{- else if .Values.apiKey.value }}
{{- printf "%s-api-key" (include "whatsapp-exporter.fullname" .) }}
{{- end }}
{{- end }}

{{- define "whatsapp-exporter.webConfigEnabled" -}}
{{- if or .Values.web.tls.enabled .Values.web.basicAuth.enabled }}true{{ end }}
{{- end }}

{{- define "whatsapp-exporter.scheme" -}}
{{- if .Values.web.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/*
Checks of values that would render a pod that cannot work, or that would put the key where it
does not belong. Each fails the render with one line that names the value.
*/}}
{{- define "whatsapp-exporter.validate" -}}
{{- if and .Values.apiKey.existingSecret .Values.apiKey.value }}
{{- fail "apiKey: set existingSecret or value, not both" }}
{{- end }}
{{- if and .Values.web.tls.enabled (not .Values.web.tls.secretName) }}
{{- fail "web.tls.secretName: required with web.tls.enabled (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if .Values.web.basicAuth.enabled }}
{{- if not .Values.web.basicAuth.passwordHash }}
{{- fail "web.basicAuth.passwordHash: required with web.basicAuth.enabled (a bcrypt hash)" }}
{{- end }}
{{- if not .Values.web.basicAuth.secretName }}
{{- fail "web.basicAuth.secretName: required with web.basicAuth.enabled (a Secret with username and password, for Prometheus and the readiness probe)" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The exporter's config file: .Values.config, with splashify.api_key_file pointing at the mounted
Secret. The key itself never enters the ConfigMap.
*/}}
{{- define "whatsapp-exporter.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- if hasKey $config "shard" }}
{{- fail "config.shard: set by the chart, one shard per pod (use shards)" }}
{{- end }}
{{- if hasKey $config "web" }}
{{- fail "config.web: set by the chart (use web.port)" }}
{{- end }}
{{- $splashify := get $config "splashify" | default dict }}
{{- if or (hasKey $splashify "api_key") (hasKey $splashify "api_key_file") }}
{{- fail "config.splashify.api_key: not in the config, which is a ConfigMap; put the key in a Secret (apiKey.existingSecret or apiKey.value)" }}
{{- end }}
{{- if include "whatsapp-exporter.apiKeySecretName" . }}
{{- $_ := set $splashify "api_key_file" (include "whatsapp-exporter.apiKeyFile" .) }}
{{- end }}
{{- $_ := set $config "splashify" $splashify }}
{{- range $i, $target := (get $config "targets" | default list) }}
{{- if kindIs "map" $target }}
{{- range $key := list "waba_id" "customer_id" }}
{{- if and (hasKey $target $key) (not (kindIs "string" (get $target $key))) }}
{{- fail (printf "config.targets[%d].%s: quote it (\"%v\"): Helm reads an unquoted number as floating point, which can change a long id" $i $key (get $target $key)) }}
{{- end }}
{{- end }}
{{- range $j, $phone := (get $target "phone_numbers" | default list) }}
{{- if not (kindIs "string" $phone) }}
{{- fail (printf "config.targets[%d].phone_numbers[%d]: quote it (\"%v\"): Helm reads an unquoted number as floating point, which can change a long id" $i $j $phone) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The exporter's web config file (exporter-toolkit format), when TLS or basic auth is on. */}}
{{- define "whatsapp-exporter.webConfig" -}}
{{- $web := dict }}
{{- if .Values.web.tls.enabled }}
{{- $tlsDir := include "whatsapp-exporter.tlsDir" . }}
{{- $_ := set $web "tls_server_config" (dict "cert_file" (printf "%s/tls.crt" $tlsDir) "key_file" (printf "%s/tls.key" $tlsDir)) }}
{{- end }}
{{- if .Values.web.basicAuth.enabled }}
{{- $_ := set $web "basic_auth_users" (dict .Values.web.basicAuth.username .Values.web.basicAuth.passwordHash) }}
{{- end }}
{{- toYaml $web }}
{{- end }}

{{/*
The readiness probe for basic auth: kubelet's httpGet cannot read a Secret, so a small script
asks /ready with the credentials Prometheus uses (the same Secret).
*/}}
{{- define "whatsapp-exporter.readyProbeScript" -}}
"""Readiness with basic auth: GET /ready with the scraper's own credentials.

Arguments: URL, and the directory of the Secret with `username` and `password`. Exits 0 on a
2xx answer. The certificate is not checked (kubelet's own HTTPS probes do not check it either).
"""

import base64
import pathlib
import ssl
import sys
import urllib.request

url, secret_dir = sys.argv[1], pathlib.Path(sys.argv[2])
username = (secret_dir / "username").read_bytes()
password = (secret_dir / "password").read_bytes()
token = base64.b64encode(username + b":" + password).decode("ascii")
request = urllib.request.Request(url, headers={"Authorization": "Basic " + token})
try:
    urllib.request.urlopen(request, timeout=4, context=ssl._create_unverified_context())
except Exception as error:  # any failure is "not ready", said in one line
    sys.exit(f"not ready: {error}")
{{- end }}
