package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Restore puts a Complete Backup or Snapshot of the same chain back into a
// node: its chain state only (chain_data and data); the node keeps its keys
// and identity. The live data is replaced only after the copy is verified.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=cita
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Chain",type=string,JSONPath=`.spec.chain`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Backup",type=string,JSONPath=`.spec.backup`,priority=1
// +kubebuilder:printcolumn:name="Snapshot",type=string,JSONPath=`.spec.snapshot`,priority=1
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.step`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Restore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which node to restore and from what.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable after creation: create a new Restore instead"
	Spec RestoreSpec `json:"spec"`

	// Status is the operation's progress and result.
	// +optional
	Status RestoreStatus `json:"status,omitempty"`
}

// RestoreSpec is the desired restore.
//
// +kubebuilder:validation:XValidation:rule="has(self.backup) != has(self.snapshot)",message="exactly one of spec.backup or spec.snapshot must be set"
type RestoreSpec struct {
	NodeTarget     `json:",inline"`
	NodeJobOptions `json:",inline"`
	JobOptions     `json:",inline"`

	// Backup is the name of a Complete Backup in this namespace to restore.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Backup string `json:"backup,omitempty"`

	// Snapshot is the name of a Complete Snapshot in this namespace to
	// restore.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Snapshot string `json:"snapshot,omitempty"`

	// DeleteConsensusData also removes the node's consensus data
	// (raft-data-dir, overlord_wal).
	// +kubebuilder:default=false
	// +optional
	DeleteConsensusData *bool `json:"deleteConsensusData,omitempty"`
}

// RestoreStatus is the progress and result of a Restore.
type RestoreStatus struct {
	OperationStatus `json:",inline"`

	// Verified is true when the restored data was checked against the
	// source's checksum manifest, false when the source had none (a backup
	// made by the original project).
	// +optional
	Verified *bool `json:"verified,omitempty"`
}

// RestoreList is a list of Restore.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type RestoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Restore `json:"items"`
}
