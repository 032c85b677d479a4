{{/*
Names, labels and the facts every template shares. The call graph and the ports below are
medrelay's own (libs/medrelay/settings.py CALLS and DEFAULT_PORTS): they are not values,
because changing them would not change what the code dials. tests/deploy checks the
NetworkPolicies rendered from them against settings.CALLS.
*/}}

{{- define "medrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "medrelay.fullname" -}}
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

{{/* The processes, in the order they start in `make run`. */}}
{{- define "medrelay.components" -}}
["identity", "consent", "keys", "exchange", "gateway"]
{{- end }}

{{/* Which services each process dials (settings.CALLS). */}}
{{- define "medrelay.calls" -}}
identity: [keys]
consent: [keys, identity]
keys: []
exchange: [identity, consent, keys]
gateway: [identity, consent, exchange]
{{- end }}

{{/* The processes that keep their data in PostgreSQL (every gRPC service). */}}
{{- define "medrelay.databaseUsers" -}}
["identity", "consent", "keys", "exchange"]
{{- end }}

{{/* The port each process serves on: gRPC over mutual TLS, or HTTPS for the gateway. */}}
{{- define "medrelay.ports" -}}
identity: 7101
consent: 7102
keys: 7103
exchange: 7104
gateway: 7443
{{- end }}

{{- define "medrelay.port" -}}
{{- index (include "medrelay.ports" .root | fromYaml) .name }}
{{- end }}

{{/* The enabled components, as a JSON list. */}}
{{- define "medrelay.enabled" -}}
{{- $enabled := list }}
{{- range $name := include "medrelay.components" . | fromJsonArray }}
{{- if (index $.Values $name).enabled }}
{{- $enabled = append $enabled $name }}
{{- end }}
{{- end }}
{{- toJson $enabled }}
{{- end }}

{{- define "medrelay.componentName" -}}
{{- printf "%s-%s" (include "medrelay.fullname" .root | trunc (int (sub 62 (len .name)))) .name | trimSuffix "-" }}
{{- end }}

{{- define "medrelay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "medrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "medrelay.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}
{{- end }}

{{- define "medrelay.labels" -}}
helm.sh/chart: {{ include "medrelay.chart" .root }}
{{ include "medrelay.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: medrelay
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
metadata of one object: name (objectName, or the component's), namespace, labels, and the
common annotations merged with the object's own (`annotations`, which win).
*/}}
{{- define "medrelay.metadata" -}}
name: {{ .objectName | default (include "medrelay.componentName" .) }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "medrelay.labels" . | nindent 2 }}
{{- $annotations := merge (deepCopy (.annotations | default dict)) .root.Values.commonAnnotations }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "medrelay.image" -}}
{{- $image := .Values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The kubernetes.io/tls Secret of one component (tls.crt, tls.key, ca.crt). */}}
{{- define "medrelay.tlsSecret" -}}
{{- if eq .root.Values.tls.source "certManager" }}
{{- printf "%s-tls" (include "medrelay.componentName" .) }}
{{- else }}
{{- index .root.Values.tls.existingSecrets .name }}
{{- end }}
{{- end }}

{{/* The cert-manager issuer of the services' certificates: the configured one, or the CA
issuer this chart bootstraps (certificate-issuer.yaml). */}}
{{- define "medrelay.issuerRef" -}}
{{- if .Values.tls.certManager.issuerRef.name }}
{{- toYaml .Values.tls.certManager.issuerRef }}
{{- else }}
group: cert-manager.io
kind: Issuer
name: {{ include "medrelay.fullname" . }}-ca
{{- end }}
{{- end }}

{{/* The CloudNativePG Cluster's name. */}}
{{- define "medrelay.cnpgName" -}}
{{- default (printf "%s-postgresql" (include "medrelay.fullname" .)) .Values.database.cloudnativepg.name }}
{{- end }}

{{/* The Secret and key holding the PostgreSQL URL. */}}
{{- define "medrelay.databaseSecret" -}}
{{- if eq .Values.database.source "cloudnativepg" }}
name: {{ include "medrelay.cnpgName" . }}-app
key: uri
{{- else }}
name: {{ .Values.database.existingSecret.name | default (printf "%s-database" (include "medrelay.fullname" .)) }}
key: {{ .Values.database.existingSecret.key }}
{{- end }}
{{- end }}

{{/* The local key backend's master key Secret, which the operator creates (never the chart). */}}
{{- define "medrelay.masterKeySecret" -}}
{{- default (printf "%s-keys-master-key" (include "medrelay.fullname" .)) .Values.keys.local.existingSecret }}
{{- end }}

{{/* The DNS names a component's Service is dialled by. */}}
{{- define "medrelay.dnsNames" -}}
{{- $service := include "medrelay.componentName" . -}}
{{- $namespace := .root.Release.Namespace -}}
- {{ $service }}
- {{ $service }}.{{ $namespace }}
- {{ $service }}.{{ $namespace }}.svc
- {{ $service }}.{{ $namespace }}.svc.{{ .root.Values.clusterDomain }}
{{- end }}

{{/* The container securityContext and the pod securityContext every pod of the chart uses. */}}
{{- define "medrelay.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "medrelay.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/*
PostgreSQL's URL reaches a process as a file (MEDRELAY_DATABASE_URL_FILE) from the Secret,
never as an environment variable: the volume and its mount.
*/}}
{{- define "medrelay.databaseVolume" -}}
{{- $secret := include "medrelay.databaseSecret" . | fromYaml }}
- name: database
  secret:
    secretName: {{ $secret.name }}
    defaultMode: 0440
    items:
      - key: {{ $secret.key }}
        path: url
{{- with .Values.database.caSecret.name }}
- name: database-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
    items:
      - key: {{ $.Values.database.caSecret.key }}
        path: ca.crt
{{- end }}
{{- end }}

{{- define "medrelay.databaseMount" -}}
- name: database
  mountPath: /etc/medrelay/database
  readOnly: true
{{- if .Values.database.caSecret.name }}
- name: database-ca
  mountPath: /etc/medrelay/database-ca
  readOnly: true
{{- end }}
{{- end }}

{{/*
Checks across values that values.schema.json cannot express; each failure says which value
to set. Included once, by deployment.yaml.
*/}}
{{- define "medrelay.validate" -}}
{{- $enabled := include "medrelay.enabled" . | fromJsonArray }}
{{- $calls := include "medrelay.calls" . | fromYaml }}
{{- if not $enabled }}
{{- fail "nothing to deploy: enable at least one of identity, consent, keys, exchange, gateway" }}
{{- end }}
{{- range $name := $enabled }}
{{- range $peer := index $calls $name }}
{{- if not (index $.Values $peer).enabled }}
{{- fail (printf "%s.enabled: %s calls %s, so %s must be enabled too" $peer $name $peer $peer) }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq .Values.tls.source "existingSecrets" }}
{{- range $name := $enabled }}
{{- if not (index $.Values.tls.existingSecrets $name) }}
{{- fail (printf "tls.existingSecrets.%s: required with tls.source=existingSecrets (a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt)" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.keys.enabled (eq .Values.keys.backend "vault") }}
{{- if not .Values.keys.vault.address }}
{{- fail "keys.vault.address: required with keys.backend=vault (e.g. https://vault.vault.svc:8200)" }}
{{- end }}
{{- if not .Values.keys.vault.role }}
{{- fail "keys.vault.role: required with keys.backend=vault (the Kubernetes auth role bound to the keys service account)" }}
{{- end }}
{{- end }}
{{- range $name := $enabled }}
{{- if hasKey (index $.Values $name).config "MEDRELAY_DATABASE_URL" }}
{{- fail (printf "%s.config.MEDRELAY_DATABASE_URL: the URL holds PostgreSQL's password, and config is a ConfigMap: put it in the Secret database.existingSecret names (each service reads it as a file)" $name) }}
{{- end }}
{{- end }}
{{- if and .Values.gateway.ingress.enabled (not .Values.gateway.enabled) }}
{{- fail "gateway.ingress.enabled: the Ingress needs gateway.enabled=true" }}
{{- end }}
{{- end }}

{{/* The MEDRELAY_* settings of one process, as ConfigMap data. */}}
{{- define "medrelay.config" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $values := index $root.Values $name }}
{{- $config := dict }}
{{- $_ := set $config "MEDRELAY_TRUST_DOMAIN" $root.Values.trustDomain }}
{{- $_ := set $config "MEDRELAY_LOG_LEVEL" $root.Values.log.level }}
{{- $_ := set $config "MEDRELAY_LOG_FORMAT" $root.Values.log.format }}
{{- $_ := set $config "MEDRELAY_OTLP_ENDPOINT" $root.Values.telemetry.otlpEndpoint }}
{{- $_ := set $config "MEDRELAY_LISTEN_ADDRESS" (printf "0.0.0.0:%s" (include "medrelay.port" .)) }}
{{- $_ := set $config "MEDRELAY_HEALTH_LISTEN_ADDRESS" (printf "0.0.0.0:%v" $root.Values.healthPort) }}
{{- $_ := set $config "MEDRELAY_TLS_CERT" "/etc/medrelay/tls/tls.crt" }}
{{- $_ := set $config "MEDRELAY_TLS_KEY" "/etc/medrelay/tls/tls.key" }}
{{- $_ := set $config "MEDRELAY_TLS_CA" "/etc/medrelay/tls/ca.crt" }}
{{- range $peer := index (include "medrelay.calls" $root | fromYaml) $name }}
{{- $address := printf "%s:%s" (include "medrelay.componentName" (dict "root" $root "name" $peer)) (include "medrelay.port" (dict "root" $root "name" $peer)) }}
{{- $_ := set $config (printf "MEDRELAY_%s_ADDRESS" (upper $peer)) $address }}
{{- end }}
{{- if has $name (include "medrelay.databaseUsers" $root | fromJsonArray) }}
{{- $_ := set $config "MEDRELAY_DATABASE_URL_FILE" "/etc/medrelay/database/url" }}
{{- $_ := set $config "MEDRELAY_DB_POOL_SIZE" (toString $values.dbPoolSize) }}
{{- end }}
{{- if eq $name "consent" }}
{{- $_ := set $config "MEDRELAY_CONSENT_DEFAULT_POLICY" $values.defaultPolicy }}
{{- $_ := set $config "MEDRELAY_CONSENT_DEIDENTIFIED_POLICY" $values.deidentifiedPolicy }}
{{- end }}
{{- if eq $name "keys" }}
{{- $_ := set $config "MEDRELAY_KEYS_BACKEND" $values.backend }}
{{- $_ := set $config "MEDRELAY_KEYS_KEY_PREFIX" $values.keyPrefix }}
{{- if eq $values.backend "local" }}
{{- $_ := set $config "MEDRELAY_KEYS_MASTER_KEY_FILE" "/etc/medrelay/keys/master-key" }}
{{- else }}
{{- $vault := $values.vault }}
{{- $_ := set $config "MEDRELAY_VAULT_ADDR" $vault.address }}
{{- $_ := set $config "MEDRELAY_VAULT_AUTH" "kubernetes" }}
{{- $_ := set $config "MEDRELAY_VAULT_AUTH_MOUNT" $vault.authMount }}
{{- $_ := set $config "MEDRELAY_VAULT_ROLE" $vault.role }}
{{- $_ := set $config "MEDRELAY_VAULT_KUBERNETES_TOKEN_FILE" "/var/run/secrets/medrelay/vault/token" }}
{{- $_ := set $config "MEDRELAY_VAULT_TRANSIT_MOUNT" $vault.transitMount }}
{{- $_ := set $config "MEDRELAY_VAULT_TIMEOUT_SECONDS" (toString $vault.timeoutSeconds) }}
{{- if $vault.namespace }}
{{- $_ := set $config "MEDRELAY_VAULT_NAMESPACE" $vault.namespace }}
{{- end }}
{{- if $vault.caSecret.name }}
{{- $_ := set $config "MEDRELAY_VAULT_CACERT" "/etc/medrelay/vault-ca/ca.crt" }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $value := $values.config }}
{{- /* Helm reads every number as a float, which toString writes as 1e+09: a whole one is
written as the integer it is. */}}
{{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}
{{- $value = int64 $value }}
{{- end }}
{{- $_ := set $config $key (toString $value) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Egress rule to the cluster's DNS. */}}
{{- define "medrelay.dnsEgress" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    - port: {{ .Values.networkPolicy.dns.port }}
      protocol: UDP
    - port: {{ .Values.networkPolicy.dns.port }}
      protocol: TCP
{{- end }}

{{/* Egress rule to PostgreSQL: the CloudNativePG Cluster's pods, or the configured peers. */}}
{{- define "medrelay.databaseEgress" -}}
{{- if eq .Values.database.source "cloudnativepg" }}
- to:
    - podSelector:
        matchLabels:
          cnpg.io/cluster: {{ include "medrelay.cnpgName" . }}
  ports:
    - port: 5432
      protocol: TCP
{{- else }}
- ports:
    - port: {{ .Values.database.networkPolicy.port }}
      protocol: TCP
  {{- with .Values.database.networkPolicy.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
