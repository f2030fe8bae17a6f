{{/*
The conclave chart renders the objects `conclave deploy k8s` renders
(crates/conclave-eval/src/k8s/), but the Secrets; the two are compared by
crates/conclave/tests/deploy_k8s.rs. Keep them in step.
*/}}

{{/* Prefix of every object name: `name`, or the release name. */}}
{{- define "conclave.prefix" -}}
{{- default .Release.Name .Values.name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels (and selector) of a component: (dict "root" $ "component" NAME). */}}
{{- define "conclave.labels" -}}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/instance: {{ include "conclave.prefix" .root }}
app.kubernetes.io/name: conclave
{{- end -}}

{{- define "conclave.metadata" -}}
name: {{ include "conclave.prefix" .root }}-{{ .name | default .component }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "conclave.labels" . | nindent 2 }}
{{- end -}}

{{/* Every pod: one non-root uid, RuntimeDefault seccomp. */}}
{{- define "conclave.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Every container: the restricted profile. */}}
{{- define "conclave.containerSecurity" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The files of a part's Secret, as a list of "key=path", by part. */}}
{{- define "conclave.files" -}}
{{- $v := .root.Values -}}
{{- $role := .part -}}
{{- $files := list "root.crt=root.crt" (printf "%s.crt=%s.crt" $role $role) (printf "%s.key=%s.key" $role $role) -}}
{{- if eq .part "edge" -}}
{{- $files = append $files "server.crt=server.crt" -}}
{{- if ne $v.edge.key "keyserver" }}{{ $files = append $files "server.key=server.key" }}{{ end -}}
{{- if and (eq $v.edge.shared "smdish") (ne $v.edge.key "keyserver") }}{{ $files = append $files "ticket.secret=ticket.secret" }}{{ end -}}
{{- if eq $v.edge.shared "smc" }}{{ $files = append $files "smc.secret=smc.secret" }}{{ end -}}
{{- else if eq .part "keyserver" -}}
{{- $files = append $files "keys-server.key=keys/server.key" -}}
{{- $files = append $files "ticket.keys=ticket.keys" -}}
{{- else if eq .part "fileserver" -}}
{{- if ne $v.fileserver.device "std" }}{{ $files = append $files "fs.secret=fs.secret" }}{{ end -}}
{{- end -}}
{{- join "\n" $files -}}
{{- end -}}

{{/* A part's Secret volume and its memory emptyDir: (dict "root" $ "part" P "size" S). */}}
{{- define "conclave.identityVolumes" -}}
- name: {{ .part }}-secret
  secret:
    secretName: {{ include "conclave.prefix" .root }}-{{ .part }}-identity
    defaultMode: 256
    items:
    {{- range (include "conclave.files" . | splitList "\n") }}
    {{- $kv := splitList "=" . }}
      - key: {{ index $kv 0 }}
        path: {{ index $kv 1 }}
    {{- end }}
- name: {{ .part }}-run
  emptyDir:
    medium: Memory
    sizeLimit: {{ .size }}
{{- end -}}

{{/* The init container installing a part's Secret (0600) into its directory: (dict "root" $ "part" P "dirs" LIST). */}}
{{- define "conclave.installIdentity" -}}
{{- $dest := printf "/var/lib/conclave/run/%s" .part -}}
{{- $script := "set -eu\numask 077\n" -}}
{{- range (include "conclave.files" . | splitList "\n") -}}
{{- $path := index (splitList "=" .) 1 -}}
{{- $script = printf "%sinstall -D -m 0600 '/etc/conclave/identity/%s' '%s/%s'\n" $script $path $dest $path -}}
{{- end -}}
{{- range .dirs -}}
{{- $script = printf "%smkdir -p '%s'\n" $script . -}}
{{- end -}}
- name: {{ .part }}-identity
  image: {{ .root.Values.image }}
  imagePullPolicy: {{ .root.Values.imagePullPolicy }}
  command: ["/bin/sh", "-c", {{ $script | quote }}]
  securityContext:
    {{- include "conclave.containerSecurity" . | nindent 4 }}
  resources:
    requests: { cpu: 10m, memory: 16Mi }
    limits: { memory: 32Mi }
  volumeMounts:
    - name: {{ .part }}-secret
      mountPath: /etc/conclave/identity
      readOnly: true
    - name: {{ .part }}-run
      mountPath: {{ $dest }}
{{- end -}}

{{/* Pods of a component on distinct nodes: (dict "root" $ "component" C). */}}
{{- define "conclave.antiAffinityTerm" -}}
labelSelector:
  matchLabels:
    {{- include "conclave.labels" . | nindent 4 }}
topologyKey: kubernetes.io/hostname
{{- end -}}
