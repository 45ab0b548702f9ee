package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeployMethod says how the node was deployed, and so what "the node" is:
// which workload stopping it scales and where its data lives.
// +kubebuilder:validation:Enum=python;cloud-config;helm
type DeployMethod string

const (
	// DeployMethodPython: one Deployment per node, labelled chain_name/node_name.
	DeployMethodPython DeployMethod = "python"
	// DeployMethodCloudConfig: one StatefulSet per node, named after the node.
	DeployMethodCloudConfig DeployMethod = "cloud-config"
	// DeployMethodHelm: one StatefulSet per chain; its pods are the nodes.
	DeployMethodHelm DeployMethod = "helm"
)

// Action says whether the operator stops the node around the operation.
// +kubebuilder:validation:Enum=StopAndStart;Direct
type Action string

const (
	// ActionStopAndStart stops the node, runs the operation and starts it again.
	ActionStopAndStart Action = "StopAndStart"
	// ActionDirect neither stops nor starts the node. Backup and ChangeOwner
	// then work on the live volume; BlockHeightFallback, Snapshot and Restore
	// run only if the node is already stopped.
	ActionDirect Action = "Direct"
)

// Phase is the overall state of an operation. The values are the original
// project's, which scripts compare against `.status.status`.
type Phase string

const (
	// PhaseActive: the operation is waiting for its node or in progress.
	PhaseActive Phase = "Active"
	// PhaseComplete: the operation's work was done and checked, and a node
	// it stopped was started again and seen Ready (condition NodeReady).
	PhaseComplete Phase = "Complete"
	// PhaseFailed: the operation failed; .status.message says why. A node the
	// operator stopped has been started again.
	PhaseFailed Phase = "Failed"
)

// Step is where in the stop → run → start sequence an operation is.
type Step string

const (
	// StepValidating: checking that the node and referenced objects fit the operation.
	StepValidating Step = "Validating"
	// StepWaiting: another operation holds the node.
	StepWaiting Step = "Waiting"
	// StepStopping: the node is being scaled to zero and its pods awaited.
	StepStopping Step = "Stopping"
	// StepRunning: the operation's Job (or the Switchover swap) runs.
	StepRunning Step = "Running"
	// StepStarting: the node is being scaled back to its recorded replicas,
	// then awaited until every pod of its workload is Ready.
	StepStarting Step = "Starting"
	// StepDone: the operation has finished; see .status.status.
	StepDone Step = "Done"
)

// Condition types set on every kind.
const (
	// ConditionNodeLocked is True while the operation holds its node(s); False
	// with reason Waiting (and the holder named) while another operation does.
	ConditionNodeLocked = "NodeLocked"
	// ConditionNodeStopped is True while the node is stopped by this operation.
	ConditionNodeStopped = "NodeStopped"
	// ConditionSucceeded is True when the operation's work succeeded, False
	// when it failed.
	ConditionSucceeded = "Succeeded"
	// ConditionNodeReady is set once an operation that stopped its node has
	// started it: Unknown while its pods are awaited, True when every pod of
	// the started workload is Ready, False (the operation Failed with reason
	// NodeNotReady) when they were not Ready in time.
	ConditionNodeReady = "NodeReady"
)

// NodeTarget names the node an operation works on.
type NodeTarget struct {
	// Chain is the name of the chain the node belongs to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	Chain string `json:"chain"`

	// Node is the name of the node: the StatefulSet (cloud-config), the pod of
	// the chain's StatefulSet (helm) or the Deployment (python).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Node string `json:"node"`

	// DeployMethod is how the node was deployed: python, cloud-config or helm.
	DeployMethod DeployMethod `json:"deployMethod"`
}

// JobOptions shape the pod that does an operation's work. Every kind
// accepts them.
type JobOptions struct {
	// Image of the operation's Job pod. Empty: the operator's configured job
	// image. The original project's job image (repository .../cita-node-job)
	// cannot work with this operator and is replaced by the configured one,
	// with a Warning event.
	// +optional
	Image string `json:"image,omitempty"`

	// PullPolicy of the Job pod's image: IfNotPresent, Always or Never.
	// +kubebuilder:validation:Enum=IfNotPresent;Always;Never
	// +kubebuilder:default=IfNotPresent
	// +optional
	PullPolicy corev1.PullPolicy `json:"pullPolicy,omitempty"`

	// TTLSecondsAfterFinished is how long the finished Job is kept, in
	// seconds. It starts once the Job's result is recorded in this status.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	// +kubebuilder:default=30
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
}

// NodeJobOptions are the options of operations on one node's data.
type NodeJobOptions struct {
	// Action is StopAndStart (stop the node, run, start it again) or Direct
	// (leave the node as it is; see the kind's description for what Direct
	// allows).
	// +kubebuilder:default=StopAndStart
	// +optional
	Action Action `json:"action,omitempty"`

	// PodAffinityFlag, when true, runs the Job on the machine the node's pod
	// ran on (for node-local volumes).
	// +kubebuilder:default=false
	// +optional
	PodAffinityFlag *bool `json:"podAffinityFlag,omitempty"`
}

// OperationStatus is the status every kind shares.
type OperationStatus struct {
	// Status is Active, Complete or Failed.
	// +optional
	Status Phase `json:"status,omitempty"`

	// Step is where the operation is: Validating, Waiting, Stopping,
	// Running, Starting or Done.
	// +optional
	Step Step `json:"step,omitempty"`

	// StartTime is when the operator began the operation.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// EndTime is when the operation reached Complete or Failed.
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`

	// Message is a human-readable account of the last step or of the failure.
	// +optional
	Message string `json:"message,omitempty"`

	// ObservedGeneration is the generation of the spec this status is for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: NodeLocked, NodeStopped, Succeeded, NodeReady.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Nodes records, per node, what the operator needs to start it again.
	// +listType=map
	// +listMapKey=name
	// +optional
	Nodes []NodeRecord `json:"nodes,omitempty"`

	// Job records the operation's Job and its result.
	// +optional
	Job *JobRecord `json:"job,omitempty"`
}

// NodeRecord is what the operator recorded about a node before stopping it.
type NodeRecord struct {
	// Name of the node.
	Name string `json:"name"`

	// Workload is the object stop and start scale, as Kind/name.
	// +optional
	Workload string `json:"workload,omitempty"`

	// Replicas the workload had before the operator stopped it. Unset: the
	// operator has not stopped it.
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Machine is the Kubernetes node the node's pod ran on.
	// +optional
	Machine string `json:"machine,omitempty"`
}

// JobRecord is the operation's Job as the operator ran it.
type JobRecord struct {
	// Name of the Job.
	Name string `json:"name"`

	// Image the Job's pod ran.
	// +optional
	Image string `json:"image,omitempty"`

	// Result is the one-line JSON result the Job's pod reported.
	// +optional
	Result string `json:"result,omitempty"`
}

// VolumeStatus describes the PVC a Backup or Snapshot wrote.
type VolumeStatus struct {
	// PVC is the name of the claim holding the data; it is named after, and
	// owned by, this object.
	// +optional
	PVC string `json:"pvc,omitempty"`

	// StorageClass the claim was created with.
	// +optional
	StorageClass string `json:"storageClass,omitempty"`

	// Allocate is the size requested for the claim, in bytes.
	// +optional
	Allocate int64 `json:"allocate,omitempty"`

	// Actual is the size of the data written, in bytes.
	// +optional
	Actual int64 `json:"actual,omitempty"`

	// Size is Actual in human-readable form.
	// +optional
	Size string `json:"size,omitempty"`

	// Files is the number of files written.
	// +optional
	Files int64 `json:"files,omitempty"`

	// Checksum identifies the manifest of per-file checksums stored with the
	// data; Restore verifies against that manifest.
	// +optional
	Checksum string `json:"checksum,omitempty"`
}
