package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// BlockHeightFallback rolls a node's chain back to a block height with
// cloud-op: stop the node, roll back, start the node.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=bhf,categories=cita
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Chain",type=string,JSONPath=`.spec.chain`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Height",type=integer,JSONPath=`.spec.blockHeight`,priority=1
// +kubebuilder:printcolumn:name="Before",type=integer,JSONPath=`.status.heightBefore`,priority=1
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.step`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BlockHeightFallback struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which node to roll back and to which height.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable after creation: create a new BlockHeightFallback instead"
	Spec BlockHeightFallbackSpec `json:"spec"`

	// Status is the operation's progress and result.
	// +optional
	Status BlockHeightFallbackStatus `json:"status,omitempty"`
}

// BlockHeightFallbackSpec is the desired fallback.
type BlockHeightFallbackSpec struct {
	NodeTarget     `json:",inline"`
	NodeJobOptions `json:",inline"`
	JobOptions     `json:",inline"`

	// BlockHeight is the height to roll the chain back to.
	// +kubebuilder:validation:Minimum=0
	BlockHeight int64 `json:"blockHeight"`

	// DeleteConsensusData also removes the node's consensus data
	// (raft-data-dir, overlord_wal), as cloud-op's clean option does.
	// +kubebuilder:default=false
	// +optional
	DeleteConsensusData *bool `json:"deleteConsensusData,omitempty"`
}

// BlockHeightFallbackStatus is the progress and result of a fallback.
type BlockHeightFallbackStatus struct {
	OperationStatus `json:",inline"`

	// HeightBefore is the node's block height before the fallback, as
	// cloud-op reported it (unset where it did not). Equal to
	// spec.blockHeight: the node was already there and nothing was rolled
	// back.
	// +optional
	HeightBefore *int64 `json:"heightBefore,omitempty"`
}

// BlockHeightFallbackList is a list of BlockHeightFallback.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type BlockHeightFallbackList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BlockHeightFallback `json:"items"`
}
