{{/*
The rules of the operations' (Cluster)Role: the same whether cluster-wide or in
watchNamespace. Each rule says why the operator needs it.
*/}}
{{- define "cita-node-operator.operationRules" -}}
{{- $kinds := include "cita-node-operator.operationResources" . | fromYamlArray -}}
# The operation kinds: informers (list, watch); finalizers and other
# metadata are merge-patched (patch), never a full update of the spec; get for
# kubectl-style live reads of an operation.
- apiGroups: ["citacloud.rivtower.com"]
  resources:
    {{- range $kinds }}
    - {{ . }}
    {{- end }}
  verbs: ["get", "list", "watch", "patch"]
# Their status subresource: the operation's progress and result (UpdateStatus).
- apiGroups: ["citacloud.rivtower.com"]
  resources:
    {{- range $kinds }}
    - {{ . }}/status
    {{- end }}
  verbs: ["update"]
{{- if .Values.rbac.ownerReferenceFinalizers }}
# Only for apiservers running the OwnerReferencesPermissionEnforcement admission
# plugin (e.g. OpenShift): Jobs and Backup/Snapshot PVCs carry a controller
# owner reference with blockOwnerDeletion to their operation, which that plugin
# allows only to whoever may update the owner's finalizers.
- apiGroups: ["citacloud.rivtower.com"]
  resources:
    {{- range $kinds }}
    - {{ . }}/finalizers
    {{- end }}
    # A CitaNode's StatefulSet and Services, likewise.
    - citanodes/finalizers
  verbs: ["update"]
{{- end }}
# The nodes' workloads: cloud-config and helm nodes are StatefulSets, python
# nodes Deployments. Informers (list, watch); the lock and the stop are one
# patch with a resourceVersion precondition, the start a JSON patch that
# first tests the lock, Switchover's account-volume swap a patch of
# workloads it holds (patch).
- apiGroups: ["apps"]
  resources: ["statefulsets", "deployments"]
  verbs: ["get", "list", "watch", "patch"]
# The nodes' pods and the Jobs' pods: informer (list, watch) to see a node
# stopped, find the machine it ran on and read a Job's termination message;
# delete (with a UID precondition) a node's pod left behind after the stop
# grace period, and a Job pod still running when the node must start again.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
# The operations' Jobs: informer (list, watch); create the Job of an operation
# (and a recovery Job); patch its TTL once the result is recorded; delete it
# (UID precondition) before starting the node again.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
# Node data volumes and Backup/Snapshot volumes: informer (list, watch) to find
# a node's claim, its storage class and size; create the PVC of a Backup or
# Snapshot (owned by its CR, so deleting the CR deletes its data).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create"]
# Validation checks that a cloud-config node's <node>-config ConfigMap exists
# (read live, never cached: a namespace may hold many ConfigMaps).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# Events on the operations, one per step transition (kubectl describe). The
# recorder creates an event, then patches its count when it repeats.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# CitaNodes: informer (list, watch); their status (UpdateStatus).
- apiGroups: ["citacloud.rivtower.com"]
  resources: ["citanodes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["citacloud.rivtower.com"]
  resources: ["citanodes/status"]
  verbs: ["update"]
# A CitaNode's StatefulSet, Service and peer Services and EndpointSlices:
# server-side applied (patch; create for an apply that creates one). The
# StatefulSet's other verbs are in the workloads' rule above; Services are
# also watched, to revert a change. Deleting a CitaNode deletes them through
# their owner reference (the garbage collector), so no delete.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["create", "patch"]
{{- end }}
