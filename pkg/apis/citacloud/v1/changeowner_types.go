package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ChangeOwner changes the owner of every file in a node's data directory
// (chown -R uid:gid, never following a symlink out of it).
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
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ChangeOwner struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says whose data to chown and to whom.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable after creation: create a new ChangeOwner instead"
	Spec ChangeOwnerSpec `json:"spec"`

	// Status is the operation's progress and result.
	// +optional
	Status OperationStatus `json:"status,omitempty"`
}

// ChangeOwnerSpec is the desired change of owner.
type ChangeOwnerSpec struct {
	NodeTarget     `json:",inline"`
	NodeJobOptions `json:",inline"`
	JobOptions     `json:",inline"`

	// UID is the user id the node's files are given.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1000
	// +optional
	UID *int64 `json:"uid,omitempty"`

	// GID is the group id the node's files are given.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1000
	// +optional
	GID *int64 `json:"gid,omitempty"`
}

// ChangeOwnerList is a list of ChangeOwner.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type ChangeOwnerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ChangeOwner `json:"items"`
}
