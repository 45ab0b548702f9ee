// Package nodetest builds the objects CITA-Cloud's deployers make for a
// node — cloud-config (a StatefulSet per node), the helm chart (a
// StatefulSet per chain), the python tool (a Deployment per node) — and
// those the cluster's controllers make from them (pods, claims), for the
// unit tests, the e2e suite, the bench and the demo alike.
//
// Builders return plain API objects; Options say what a test varies. Every
// builder reads the options that apply to what it builds and ignores the
// others, so one list of options describes a whole node:
//
//	nodetest.CloudConfigNode("test-chain", "node0", nodetest.Namespace(ns), nodetest.Stopped())
//
// It writes the names the deployers use as literals, not nodeops' constants:
// nodeops' own tests import it.
package nodetest

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// Names the deployers give a node's volumes and labels.
const (
	// DataVolume holds the node root: a volumeClaimTemplate (cloud-config)
	// or a persistentVolumeClaim volume (helm, python).
	DataVolume = "datadir"
	// AccountVolume is cloud-config's ConfigMap volume of the node's account.
	AccountVolume = "node-account"
	// ConfigVolume is cloud-config's ConfigMap volume of config.toml.
	ConfigVolume = "node-config"

	CloudConfigChainLabel = "app.kubernetes.io/chain-name"
	CloudConfigNodeLabel  = "app.kubernetes.io/chain-node"
	HelmChainLabel        = "app.kubernetes.io/instance"
	PythonChainLabel      = "chain_name"
	PythonNodeLabel       = "node_name"

	// PodTemplateHash names the ReplicaSet of a python node's pods.
	PodTemplateHash = "5d8f7c"
)

// The images of a node's microservices when no Images option is given:
// crypto sm, consensus raft.
const (
	NetworkImage    = "citacloud/network_zenoh:v6.7.0"
	ConsensusImage  = "citacloud/consensus_raft:v6.7.0"
	ExecutorImage   = "citacloud/executor_evm:v6.7.0"
	StorageImage    = "citacloud/storage_opendal:v6.7.0"
	ControllerImage = "citacloud/controller_hsm:v6.7.0"
	CryptoImage     = "citacloud/crypto_sm:v6.7.0"
)

// DefaultImages are the images of a node's containers, in their order.
func DefaultImages() []string {
	return []string{NetworkImage, ConsensusImage, ExecutorImage, StorageImage, ControllerImage, CryptoImage}
}

// Option changes what the builders build.
type Option func(*settings)

type settings struct {
	namespace       string
	resourceVersion string
	annotations     map[string]string
	replicas        int32
	machine         string
	crypto          string
	consensus       string
	subPath         string
	subPathExpr     string
	claim           string
	storageClass    *string
	size            string
	retention       *appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy
}

// apply starts from what every builder shares, then the builder's own
// defaults, then the test's options.
func apply(opts []Option, defaults ...Option) *settings {
	s := &settings{
		namespace:    metav1.NamespaceDefault,
		replicas:     1,
		machine:      "machine-a",
		crypto:       CryptoImage,
		consensus:    ConsensusImage,
		storageClass: ptr.To("local-path"),
		size:         "10Gi",
	}
	for _, o := range defaults {
		o(s)
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Options is the options in one, for a test's list of defaults.
func Options(opts ...Option) Option {
	return func(s *settings) {
		for _, o := range opts {
			o(s)
		}
	}
}

// Namespace of every object.
func Namespace(ns string) Option { return func(s *settings) { s.namespace = ns } }

// ResourceVersion of every object, as a cache or a fake clientset holds it;
// none (for a create) by default.
func ResourceVersion(rv string) Option { return func(s *settings) { s.resourceVersion = rv } }

// Annotations of the workload.
func Annotations(a map[string]string) Option { return func(s *settings) { s.annotations = a } }

// Replicas of the workload (default 1; for a helm chain, its size). The node
// sets hold pods only while it is above 0.
func Replicas(n int32) Option { return func(s *settings) { s.replicas = n } }

// Stopped is a node scaled to 0: no pods.
func Stopped() Option { return Replicas(0) }

// Machine the pods are scheduled on ("" unscheduled). Default machine-a;
// the pods of a helm chain are spread, <chain>-<i> on machine-<i>.
func Machine(name string) Option { return func(s *settings) { s.machine = name } }

// Images of the node's crypto (or kms) and consensus containers, from which
// crypto and consensus are read.
func Images(crypto, consensus string) Option {
	return func(s *settings) { s.crypto, s.consensus = crypto, consensus }
}

// SubPath the containers mount the data volume at ("" the claim's root).
// Python mounts the node's name by default.
func SubPath(p string) Option { return func(s *settings) { s.subPath, s.subPathExpr = p, "" } }

// SubPathExpr the containers mount the data volume at. Helm mounts
// $(POD_NAME) by default.
func SubPathExpr(e string) Option { return func(s *settings) { s.subPath, s.subPathExpr = "", e } }

// Claim is the PVC of the data volume: helm's <chain>-data and python's
// <chain>-pvc by default. On cloud-config, the data volume becomes a
// persistentVolumeClaim volume of it instead of a claim template.
func Claim(name string) Option { return func(s *settings) { s.claim = name } }

// StorageClass of the claims; "" none, which the apiserver fills with the
// cluster's default class. Default local-path.
func StorageClass(name string) Option {
	return func(s *settings) {
		s.storageClass = nil
		if name != "" {
			s.storageClass = ptr.To(name)
		}
	}
}

// Size requested by the claims, and their capacity once bound. Default
// 10Gi; helm 50Gi, python 20Gi.
func Size(q string) Option { return func(s *settings) { s.size = q } }

// PVCRetention is a StatefulSet's persistentVolumeClaimRetentionPolicy;
// none by default.
func PVCRetention(whenDeleted, whenScaled appsv1.PersistentVolumeClaimRetentionPolicyType) Option {
	return func(s *settings) {
		s.retention = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: whenDeleted, WhenScaled: whenScaled}
	}
}

func (s *settings) meta(name string, labels map[string]string, uid string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: name, Namespace: s.namespace, Labels: labels, Annotations: s.annotations,
		ResourceVersion: s.resourceVersion, UID: types.UID(uid),
	}
}

// dataMount is how the node's containers mount the data volume.
func (s *settings) dataMount() corev1.VolumeMount {
	return corev1.VolumeMount{Name: DataVolume, MountPath: "/data", SubPath: s.subPath, SubPathExpr: s.subPathExpr}
}

// containers are a CITA-Cloud node's six microservices, each with its own
// copy of the mounts, the data volume's first.
func (s *settings) containers(mounts ...corev1.VolumeMount) []corev1.Container {
	mounts = append([]corev1.VolumeMount{s.dataMount()}, mounts...)
	images := []struct{ name, image string }{
		{"network", NetworkImage}, {"consensus", s.consensus}, {"executor", ExecutorImage},
		{"storage", StorageImage}, {"controller", ControllerImage}, {"crypto", s.crypto},
	}
	out := make([]corev1.Container, len(images))
	for i, c := range images {
		out[i] = corev1.Container{Name: c.name, Image: c.image, VolumeMounts: append([]corev1.VolumeMount(nil), mounts...)}
		if s.subPathExpr != "" {
			// A subPathExpr expands the container's own variables: the
			// helm chart defines POD_NAME from the pod's name, and without
			// it a kubelet refuses to start the container.
			out[i].Env = []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
		}
	}
	return out
}

func (s *settings) claimSpec() corev1.PersistentVolumeClaimSpec {
	return corev1.PersistentVolumeClaimSpec{
		StorageClassName: s.storageClass,
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(s.size)}},
	}
}

func claimVolume(claim string) corev1.Volume {
	return corev1.Volume{Name: DataVolume, VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}
}

func configMapVolume(name, configMap string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: configMap}}}}
}

// PVC is a claim, bound with the capacity it requests.
func PVC(name string, opts ...Option) *corev1.PersistentVolumeClaim {
	return apply(opts).pvc(name)
}

func (s *settings) pvc(name string) *corev1.PersistentVolumeClaim {
	size := resource.MustParse(s.size)
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace, ResourceVersion: s.resourceVersion},
		Spec:       s.claimSpec(),
		Status: corev1.PersistentVolumeClaimStatus{
			Phase:    corev1.ClaimBound,
			Capacity: corev1.ResourceList{corev1.ResourceStorage: size},
		},
	}
}

// pod is a pod of a workload's controller: running and Ready on its
// machine, or pending without one.
func (s *settings) pod(name string, labels map[string]string, ownerKind, owner string, ownerUID string) *corev1.Pod {
	status := corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if s.machine == "" {
		status = corev1.PodStatus{Phase: corev1.PodPending}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: s.namespace, Labels: labels, UID: types.UID("uid-pod-" + name), ResourceVersion: s.resourceVersion,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: ownerKind, Name: owner, UID: types.UID(ownerUID), Controller: ptr.To(true)}},
		},
		Spec:   corev1.PodSpec{NodeName: s.machine},
		Status: status,
	}
}
