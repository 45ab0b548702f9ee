package v1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CitaNode is one CITA-Cloud node, deployed and kept running by the
// operator in exactly the shape CITA-Cloud's cloud-config generates (a
// StatefulSet and a Service named after the node), so every operation sees
// it as a deployMethod: cloud-config node. The CR's name is the node's name,
// <chain>-<domain>. Deleting it deletes the StatefulSet and the Service but
// never the node's data PVC (datadir-<node>-0) nor its ConfigMaps.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=cn,categories=cita
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 52",message="metadata.name: at most 52 characters: the node's pod is <name>-0 and its PVC datadir-<name>-0, and its Service is named after it"
// +kubebuilder:printcolumn:name="Chain",type=string,JSONPath=`.spec.chainName`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="Height",type=integer,JSONPath=`.status.blockHeight`
// +kubebuilder:printcolumn:name="Peers",type=integer,JSONPath=`.status.peerCount`
// +kubebuilder:printcolumn:name="Synced",type=boolean,JSONPath=`.status.synced`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CitaNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the node as it should run.
	Spec CitaNodeSpec `json:"spec"`

	// Status is the node as it runs, from the cluster and its own API.
	// +optional
	Status CitaNodeStatus `json:"status,omitempty"`
}

// DesiredState is whether the node should run.
// +kubebuilder:validation:Enum=Running;Stopped
type DesiredState string

const (
	// DesiredStateRunning: one replica.
	DesiredStateRunning DesiredState = "Running"
	// DesiredStateStopped: zero replicas; the data stays.
	DesiredStateStopped DesiredState = "Stopped"
)

// ConsensusKind is the node's consensus service.
// +kubebuilder:validation:Enum=raft;overlord
type ConsensusKind string

const (
	// ConsensusRaft runs consensus_raft.
	ConsensusRaft ConsensusKind = "raft"
	// ConsensusOverlord runs consensus_overlord (BFT).
	ConsensusOverlord ConsensusKind = "overlord"
)

// ControllerKind is the node's controller service.
// +kubebuilder:validation:Enum=hsm;plain
type ControllerKind string

const (
	// ControllerHSM runs controller_hsm, cloud-config's default since 6.7.2.
	ControllerHSM ControllerKind = "hsm"
	// ControllerPlain runs controller.
	ControllerPlain ControllerKind = "plain"
)

// CitaNodeSpec is the desired node.
//
// +kubebuilder:validation:XValidation:rule="self.chainName == oldSelf.chainName",message="spec.chainName is immutable: a node cannot move to another chain"
// +kubebuilder:validation:XValidation:rule="self.consensus == oldSelf.consensus",message="spec.consensus is immutable: the node's consensus data would no longer match"
// +kubebuilder:validation:XValidation:rule="self.storage == oldSelf.storage",message="spec.storage is immutable: a StatefulSet's volumeClaimTemplates cannot change, and the data PVC stays"
type CitaNodeSpec struct {
	// ChainName is the chain the node belongs to (the original CitaNode's
	// chainName); the node's name is <chainName>-<domain>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	ChainName string `json:"chainName"`

	// Version is the CITA-Cloud version whose images the node runs
	// (docker.io/citacloud/<service>:<version>), unless imageInfo names an
	// image.
	// +kubebuilder:default="v6.7.4"
	// +kubebuilder:validation:Pattern=`^v[0-9]+\.[0-9]+\.[0-9]+.*$`
	// +optional
	Version string `json:"version,omitempty"`

	// Consensus is the consensus service: raft or overlord.
	// +kubebuilder:default=raft
	// +optional
	Consensus ConsensusKind `json:"consensus,omitempty"`

	// Controller is the controller service: hsm (controller_hsm) or plain
	// (controller).
	// +kubebuilder:default=hsm
	// +optional
	Controller ControllerKind `json:"controller,omitempty"`

	// ImageInfo overrides the images the version picks, and sets their
	// pull policy (the original CitaNode's imageInfo).
	// +optional
	ImageInfo ImageInfo `json:"imageInfo,omitempty"`

	// ImagePullSecrets of the node's pod.
	// +listType=atomic
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// ConfigMapRef names the ConfigMap holding the node's config.toml, as
	// cloud-config writes it (cm-config.yaml). Default <name>-config.
	// +optional
	ConfigMapRef string `json:"configMapRef,omitempty"`

	// Account names where the node's keys are: a ConfigMap, as cloud-config
	// writes it (cm-account.yaml), or a Secret with the same keys
	// (recommended: a private key does not belong in a ConfigMap). Default:
	// ConfigMap <name>-account.
	// +optional
	Account AccountRef `json:"account,omitempty"`

	// Storage of the node's data PVC.
	// +kubebuilder:default={}
	// +optional
	Storage NodeStorage `json:"storage,omitempty"`

	// DesiredState is Running (one replica) or Stopped (none; the data
	// stays). An operation that holds the node decides meanwhile; the node
	// converges once it is released.
	// +kubebuilder:default=Running
	// +optional
	DesiredState DesiredState `json:"desiredState,omitempty"`

	// Resources of each of the node's containers. Default cloud-config's:
	// requests 10m CPU and 32Mi, limits 4 CPUs and 8Gi.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// HealthCheck runs cloud-config's liveness probes (grpc-health-probe on
	// each service's port).
	// +kubebuilder:default=true
	// +optional
	HealthCheck *bool `json:"healthCheck,omitempty"`

	// Service shapes the node's Service.
	// +optional
	Service NodeService `json:"service,omitempty"`

	// ExternalPeers are peers outside the node's namespace: for each, a
	// Service named after the peer, as cloud-config writes them.
	// +listType=map
	// +listMapKey=name
	// +optional
	ExternalPeers []ExternalPeer `json:"externalPeers,omitempty"`

	// Affinity of the node's pod. Default cloud-config's: a preferred pod
	// anti-affinity on the chain's name.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// NodeSelector of the node's pod.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the node's pod.
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
}

// ImageInfo names images in place of those the version picks.
type ImageInfo struct {
	// PullPolicy of every container.
	// +kubebuilder:validation:Enum=IfNotPresent;Always;Never
	// +kubebuilder:default=IfNotPresent
	// +optional
	PullPolicy corev1.PullPolicy `json:"pullPolicy,omitempty"`
	// NetworkImage (network_zenoh).
	// +optional
	NetworkImage string `json:"networkImage,omitempty"`
	// ConsensusImage (consensus_raft or consensus_overlord).
	// +optional
	ConsensusImage string `json:"consensusImage,omitempty"`
	// ExecutorImage (executor_evm).
	// +optional
	ExecutorImage string `json:"executorImage,omitempty"`
	// StorageImage (storage_opendal).
	// +optional
	StorageImage string `json:"storageImage,omitempty"`
	// ControllerImage (controller_hsm or controller).
	// +optional
	ControllerImage string `json:"controllerImage,omitempty"`
}

// AccountRef names the node's account: exactly one of a ConfigMap or a
// Secret, with the keys node_address, validator_address and private_key.
// +kubebuilder:validation:XValidation:rule="!(has(self.configMap) && has(self.secret))",message="account: give configMap or secret, not both"
type AccountRef struct {
	// ConfigMap holding the account (cloud-config's cm-account.yaml).
	// +optional
	ConfigMap string `json:"configMap,omitempty"`
	// Secret holding the account.
	// +optional
	Secret string `json:"secret,omitempty"`
}

// NodeStorage is the node's data PVC (datadir-<node>-0), kept when the
// CitaNode is deleted.
type NodeStorage struct {
	// StorageClassName of the PVC; empty: the cluster's default class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
	// Size of the PVC, a quantity (10Gi; a byte count such as 21474836480,
	// as the original CitaNode's storageSize, parses too).
	// +kubebuilder:default="10Gi"
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// AccessMode of the PVC.
	// +kubebuilder:validation:Enum=ReadWriteOnce;ReadWriteMany;ReadWriteOncePod
	// +kubebuilder:default=ReadWriteOnce
	// +optional
	AccessMode corev1.PersistentVolumeAccessMode `json:"accessMode,omitempty"`
}

// NodeService shapes the node's Service (ports network 40000/UDP, rpc
// 50004, call 50002).
type NodeService struct {
	// Type of the Service.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +kubebuilder:default=ClusterIP
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`
	// Annotations of the Service.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ExternalPeer is a peer of the node outside its namespace.
// +kubebuilder:validation:XValidation:rule="has(self.host) != has(self.ip)",message="externalPeers: give host or ip, exactly one"
type ExternalPeer struct {
	// Name of the peer node (<chain>-<domain>), the name of its Service
	// here, which the node's config.toml names as the peer's domain.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Host is a DNS name of the peer (another namespace's Service, another
	// cluster's address): an ExternalName Service.
	// +optional
	Host string `json:"host,omitempty"`
	// IP of the peer: a Service without selector and its EndpointSlice.
	// +optional
	IP string `json:"ip,omitempty"`
	// Port of the peer's network service.
	// +kubebuilder:default=40000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
}

// NodePhase is where the node is.
type NodePhase string

const (
	NodePhasePending   NodePhase = "Pending"
	NodePhaseStarting  NodePhase = "Starting"
	NodePhaseRunning   NodePhase = "Running"
	NodePhaseStopping  NodePhase = "Stopping"
	NodePhaseStopped   NodePhase = "Stopped"
	NodePhaseUpgrading NodePhase = "Upgrading"
	NodePhaseError     NodePhase = "Error"
)

// Condition types of a CitaNode.
const (
	// NodeConditionReady: the node's pod is Ready (and, where it answers,
	// its API too); False with the reason when its inputs are invalid.
	NodeConditionReady = "Ready"
	// NodeConditionProgressing: the node is rolling out, or False when a
	// Ready node's height stopped growing.
	NodeConditionProgressing = "Progressing"
	// NodeConditionSynced: the node's API says it is in sync.
	NodeConditionSynced = "Synced"
	// NodeConditionOperationInProgress: an operation holds the node; the
	// CitaNode controller leaves its replicas to it.
	NodeConditionOperationInProgress = "OperationInProgress"
)

// CitaNodeStatus is the node as it runs.
type CitaNodeStatus struct {
	// Status is the phase: Pending, Starting, Running, Stopping, Stopped,
	// Upgrading or Error.
	// +optional
	Status NodePhase `json:"status,omitempty"`

	// ObservedGeneration is the generation of the spec this status is for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// ReadyReplicas of the node's StatefulSet.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// Images the node's containers run, by container.
	// +optional
	Images map[string]string `json:"images,omitempty"`

	// BlockHeight is the node's block height, from its API.
	// +optional
	BlockHeight int64 `json:"blockHeight,omitempty"`

	// PeerCount is the number of peers the node sees, from its API.
	// +optional
	PeerCount int32 `json:"peerCount,omitempty"`

	// Synced is whether the node says it is in sync.
	// +optional
	Synced *bool `json:"synced,omitempty"`

	// NodeVersion is the version the node's controller reports.
	// +optional
	NodeVersion string `json:"nodeVersion,omitempty"`

	// LastAnswerTime is when the node's API last answered.
	// +optional
	LastAnswerTime *metav1.Time `json:"lastAnswerTime,omitempty"`

	// Message is a human-readable account of the phase.
	// +optional
	Message string `json:"message,omitempty"`

	// Conditions: Ready, Progressing, Synced, OperationInProgress.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// CitaNodeList is a list of CitaNode.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type CitaNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CitaNode `json:"items"`
}
