// Package nodeops knows what "a node" is for each deploy method: the
// workload that stopping it scales, where its data and config live, which
// crypto and consensus it runs. It also builds the objects an operation
// creates for a node (the Job, the backup PVC) and the patches that lock,
// stop and start it. The lock is a contract for every writer of a node's
// workload, not only the operations: see lockcontract.go.
package nodeops

import (
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// Names of the pod-template volumes a CITA-Cloud node is made of.
const (
	DataVolume    = "datadir"
	AccountVolume = "node-account"
	// ConfigVolume is cloud-config's ConfigMap volume of config.toml.
	ConfigVolume = "node-config"
)

// Listers are the caches nodeops reads nodes from.
type Listers struct {
	StatefulSets appslisters.StatefulSetLister
	Deployments  appslisters.DeploymentLister
	Pods         corelisters.PodLister
	PVCs         corelisters.PersistentVolumeClaimLister
	// ConfigMapExists reports whether a ConfigMap exists. The operator does
	// not cache ConfigMaps (there are many, and only validation reads one).
	ConfigMapExists func(namespace, name string) (bool, error)
}

// InvalidError is bad input: the node is not what the operation needs. The
// operation fails with it and nothing is touched.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return e.Reason }

func invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// Target names a node as a CR does.
type Target struct {
	Namespace string
	Chain     string
	Name      string
	Method    citav1.DeployMethod
}

// Workload is what stop and start scale: a StatefulSet or a Deployment.
type Workload struct {
	Kind string // "StatefulSet" or "Deployment"
	Name string
	// Object is the workload from the cache; never modify it.
	Object   metav1.Object
	Replicas int32
	Selector labels.Selector
	Template *corev1.PodTemplateSpec
	// ClaimTemplates are a StatefulSet's volumeClaimTemplates.
	ClaimTemplates []corev1.PersistentVolumeClaim
	// Observed is the generation its controller last acted on
	// (status.observedGeneration).
	Observed int64
}

// ControllerSawSpec reports whether the workload's controller (the
// StatefulSet or Deployment controller) has acted on its current spec: after
// a stop, whether the pods still there are left behind by it or not yet
// reached.
func (w *Workload) ControllerSawSpec() bool { return w.Observed >= w.Object.GetGeneration() }

// Key identifies the workload in its namespace; locks are taken on it.
func (w *Workload) Key() string { return w.Kind + "/" + w.Name }

// WorkloadKey is the lock key of the workload a target's stop and start
// scale, computed from the target alone (no cache read), so waiting
// operations can be indexed by it.
func WorkloadKey(t Target) string {
	switch t.Method {
	case citav1.DeployMethodHelm:
		return "StatefulSet/" + t.Chain
	case citav1.DeployMethodPython:
		return "Deployment/" + t.Name
	default:
		return "StatefulSet/" + t.Name
	}
}

// Node is one CITA-Cloud node as an operation sees it.
type Node struct {
	Target
	Workload *Workload
	// DataClaim is the PVC holding the node's data; DataSubPath the node
	// root's directory inside it ("" for its root).
	DataClaim   string
	DataSubPath string
	// StorageClass and Size of the data PVC, the defaults of a backup PVC.
	StorageClass string
	Size         resource.Quantity
	AccessModes  []corev1.PersistentVolumeAccessMode
	// ConfigMap holds config.toml (cloud-config); empty: config.toml is in
	// the node root.
	ConfigMap string
	// AccountConfigMap is the ConfigMap of the node-account volume (cloud-config).
	AccountConfigMap string
	// Crypto (sm|eth) and Consensus (bft|raft|overlord), from the images.
	Crypto, Consensus string
	// podName, when set, is the one pod of the workload that is this node (helm).
	podName string
}

// Locate finds a node's workload and data for its deploy method. An
// *InvalidError says the cluster does not hold such a node.
func Locate(l Listers, t Target) (*Node, error) {
	var (
		n   *Node
		err error
	)
	switch t.Method {
	case citav1.DeployMethodCloudConfig:
		n, err = locateCloudConfig(l, t)
	case citav1.DeployMethodHelm:
		n, err = locateHelm(l, t)
	case citav1.DeployMethodPython:
		n, err = locatePython(l, t)
	default:
		return nil, invalid("unknown deployMethod %q", t.Method)
	}
	if err != nil {
		return nil, err
	}
	n.Crypto, n.Consensus = cryptoAndConsensus(n.Workload.Template)
	if err := n.readDataClaim(l); err != nil {
		return nil, err
	}
	return n, nil
}

// IsPod reports whether pod is one of this node's pods.
func (n *Node) IsPod(pod *corev1.Pod) bool {
	if pod.Namespace != n.Namespace || !n.Workload.Selector.Matches(labels.Set(pod.Labels)) {
		return false
	}
	return n.podName == "" || pod.Name == n.podName
}

// Pods lists the node's pods that exist, terminating ones included: a
// terminating pod may still write to the volume.
func (n *Node) Pods(pods corelisters.PodLister) ([]*corev1.Pod, error) {
	all, err := pods.Pods(n.Namespace).List(n.Workload.Selector)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, p := range all {
		if n.IsPod(p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Machine is the Kubernetes node one of the node's pods is scheduled on, or
// "" when none is.
func (n *Node) Machine(pods corelisters.PodLister) (string, error) {
	ps, err := n.Pods(pods)
	if err != nil {
		return "", err
	}
	for _, p := range ps {
		if p.Spec.NodeName != "" {
			return p.Spec.NodeName, nil
		}
	}
	return "", nil
}

// ConfigPath is where the Job finds the node's config.toml.
func (n *Node) ConfigPath() string {
	if n.ConfigMap != "" {
		return path.Join(jobargs.ConfigMountPath, jobargs.ConfigFileName)
	}
	return path.Join(jobargs.NodeRootMountPath, jobargs.ConfigFileName)
}

// dataVolume finds the claim behind the template's datadir volume: a
// volumeClaimTemplate (PVC <template>-<statefulset>-<ordinal>) or a
// persistentVolumeClaim volume.
func dataVolume(w *Workload, ordinal int) (claim string, err error) {
	for _, ct := range w.ClaimTemplates {
		if ct.Name == DataVolume {
			return fmt.Sprintf("%s-%s-%d", ct.Name, w.Name, ordinal), nil
		}
	}
	for _, v := range w.Template.Spec.Volumes {
		if v.Name != DataVolume {
			continue
		}
		if v.PersistentVolumeClaim == nil {
			return "", invalid("%s: volume %q is not a PersistentVolumeClaim", w.Key(), DataVolume)
		}
		return v.PersistentVolumeClaim.ClaimName, nil
	}
	return "", invalid("%s has no %q volume: cannot find the node's data", w.Key(), DataVolume)
}

// dataMount is the first container mount of the datadir volume: its
// subPath (or subPathExpr) says where the node root is inside the claim.
func dataMount(w *Workload) (*corev1.VolumeMount, error) {
	for _, c := range w.Template.Spec.Containers {
		for i := range c.VolumeMounts {
			if c.VolumeMounts[i].Name == DataVolume {
				return &c.VolumeMounts[i], nil
			}
		}
	}
	return nil, invalid("%s: no container mounts the %q volume", w.Key(), DataVolume)
}

// subPathOf is where the node root is inside the claim, for the node's pod
// podName ("" when it cannot be known in advance, as for a Deployment's
// pods): the mount's subPath, or its subPathExpr with $(POD_NAME) resolved.
// An expression with another variable cannot be resolved here and is
// refused: guessing would point the operation at another node's data.
func subPathOf(w *Workload, m *corev1.VolumeMount, podName string) (string, error) {
	if m.SubPathExpr == "" {
		return m.SubPath, nil
	}
	p := m.SubPathExpr
	if podName != "" {
		p = strings.ReplaceAll(p, "$(POD_NAME)", podName)
	}
	if strings.Contains(p, "$(") {
		return "", invalid("%s mounts %q with subPathExpr %q, whose variables the operator cannot resolve", w.Key(), DataVolume, m.SubPathExpr)
	}
	return p, nil
}

func (n *Node) readDataClaim(l Listers) error {
	pvc, err := l.PVCs.PersistentVolumeClaims(n.Namespace).Get(n.DataClaim)
	if apierrors.IsNotFound(err) {
		return invalid("the node's data PVC %s/%s does not exist", n.Namespace, n.DataClaim)
	}
	if err != nil {
		return err
	}
	n.AccessModes = pvc.Spec.AccessModes
	if pvc.Spec.StorageClassName != nil {
		n.StorageClass = *pvc.Spec.StorageClassName
	}
	if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
		n.Size = q
	} else if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		n.Size = q
	}
	return nil
}

// cryptoAndConsensus reads them from the images of the node's containers:
// the repository names kms_sm / crypto_eth / consensus_raft and so on.
func cryptoAndConsensus(t *corev1.PodTemplateSpec) (crypto, consensus string) {
	for _, c := range append(append([]corev1.Container{}, t.Spec.InitContainers...), t.Spec.Containers...) {
		repo := imageRepository(c.Image)
		for _, prefix := range []string{"kms_", "crypto_"} {
			if v, ok := strings.CutPrefix(repo, prefix); ok && crypto == "" {
				crypto = v
			}
		}
		if v, ok := strings.CutPrefix(repo, "consensus_"); ok && consensus == "" {
			consensus = v
		}
	}
	return crypto, consensus
}

// imageRepository is the last path element of an image reference, without
// tag or digest: "registry:5000/citacloud/kms_sm:v6.6.0" → "kms_sm".
func imageRepository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	last := image[strings.LastIndex(image, "/")+1:]
	if i := strings.Index(last, ":"); i >= 0 {
		last = last[:i]
	}
	return last
}

// IsOriginalJobImage reports whether image is the original project's job
// image (repository .../cita-node-job), which cannot work here.
func IsOriginalJobImage(image string) bool {
	return imageRepository(image) == "cita-node-job"
}
