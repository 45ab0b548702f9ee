package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Backup copies a node's chain state (chain_data and data) into a new PVC
// named after the Backup and owned by it: deleting the Backup deletes its
// data. With action Direct the copy is taken from the live node.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=cita
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Chain",type=string,JSONPath=`.spec.chain`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.step`
// +kubebuilder:printcolumn:name="Size",type=string,JSONPath=`.status.size`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Backup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which node to back up and where.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable after creation: create a new Backup instead"
	Spec BackupSpec `json:"spec"`

	// Status is the operation's progress and result.
	// +optional
	Status BackupStatus `json:"status,omitempty"`
}

// BackupSpec is the desired backup.
type BackupSpec struct {
	NodeTarget     `json:",inline"`
	NodeJobOptions `json:",inline"`
	JobOptions     `json:",inline"`

	// StorageClass of the backup PVC. Empty: the node's storage class.
	// +optional
	StorageClass string `json:"storageClass,omitempty"`

	// PVCSize is the size of the backup PVC (a quantity such as 20Gi).
	// Empty: the size of the node's data PVC.
	// +kubebuilder:validation:Pattern=`^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$`
	// +optional
	PVCSize string `json:"pvcSize,omitempty"`
}

// BackupStatus is the progress and result of a Backup.
type BackupStatus struct {
	OperationStatus `json:",inline"`
	VolumeStatus    `json:",inline"`

	// Live is true when the copy was taken from a running node (action
	// Direct): it may not be a consistent state.
	// +optional
	Live bool `json:"live,omitempty"`
}

// BackupList is a list of Backup.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type BackupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Backup `json:"items"`
}
