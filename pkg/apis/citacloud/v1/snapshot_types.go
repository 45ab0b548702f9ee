package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Snapshot writes the state of a node's chain at a block height into a new
// PVC named after the Snapshot and owned by it, with cloud-op.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=cita
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Chain",type=string,JSONPath=`.spec.chain`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Height",type=integer,JSONPath=`.spec.blockHeight`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.step`
// +kubebuilder:printcolumn:name="Size",type=string,JSONPath=`.status.size`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Snapshot struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which node to snapshot, at which height and where.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable after creation: create a new Snapshot instead"
	Spec SnapshotSpec `json:"spec"`

	// Status is the operation's progress and result.
	// +optional
	Status SnapshotStatus `json:"status,omitempty"`
}

// SnapshotSpec is the desired snapshot.
type SnapshotSpec struct {
	NodeTarget     `json:",inline"`
	NodeJobOptions `json:",inline"`
	JobOptions     `json:",inline"`

	// BlockHeight is the height whose state the snapshot holds.
	// +kubebuilder:validation:Minimum=0
	BlockHeight int64 `json:"blockHeight"`

	// StorageClass of the snapshot PVC. Empty: the node's storage class.
	// +optional
	StorageClass string `json:"storageClass,omitempty"`

	// PVCSize is the size of the snapshot PVC (a quantity such as 20Gi).
	// Empty: the size of the node's data PVC.
	// +kubebuilder:validation:Pattern=`^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$`
	// +optional
	PVCSize string `json:"pvcSize,omitempty"`
}

// SnapshotStatus is the progress and result of a Snapshot.
type SnapshotStatus struct {
	OperationStatus `json:",inline"`
	VolumeStatus    `json:",inline"`

	// BlockHeight is the height the snapshot was taken at.
	// +optional
	BlockHeight int64 `json:"blockHeight,omitempty"`

	// HeightBefore is the node's block height when the snapshot was taken,
	// where cloud-op reported it.
	// +optional
	HeightBefore *int64 `json:"heightBefore,omitempty"`
}

// SnapshotList is a list of Snapshot.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type SnapshotList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Snapshot `json:"items"`
}
