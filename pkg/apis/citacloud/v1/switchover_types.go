package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Switchover swaps the account ConfigMaps of two cloud-config nodes: both
// are stopped, their node-account volumes exchanged, both started.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=cita
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Chain",type=string,JSONPath=`.spec.chain`
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.sourceNode`
// +kubebuilder:printcolumn:name="Dest",type=string,JSONPath=`.spec.destNode`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.step`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Switchover struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec names the two nodes whose accounts are swapped.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable after creation: create a new Switchover instead"
	Spec SwitchoverSpec `json:"spec"`

	// Status is the operation's progress and result.
	// +optional
	Status OperationStatus `json:"status,omitempty"`
}

// SwitchoverSpec is the desired switchover.
//
// +kubebuilder:validation:XValidation:rule="self.sourceNode != self.destNode",message="spec.destNode must differ from spec.sourceNode",fieldPath=".destNode"
type SwitchoverSpec struct {
	// Chain is the name of the chain both nodes belong to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	Chain string `json:"chain"`

	// SourceNode is the first node (a cloud-config StatefulSet).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SourceNode string `json:"sourceNode"`

	// DestNode is the second node (a cloud-config StatefulSet).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	DestNode string `json:"destNode"`

	// JobOptions are accepted for compatibility with the original project;
	// the swap needs no Job.
	JobOptions `json:",inline"`
}

// SwitchoverList is a list of Switchover.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type SwitchoverList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Switchover `json:"items"`
}
