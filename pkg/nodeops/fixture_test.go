package nodeops

import (
	"errors"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

const ns = "chains"

// newListers loads objs into real indexers behind the listers Locate reads,
// the way the operator's informers would. ConfigMaps back ConfigMapExists.
func newListers(t *testing.T, objs ...runtime.Object) Listers {
	t.Helper()
	index := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	sts, deploys, pods, pvcs := index(), index(), index(), index()
	configMaps := map[string]bool{}
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *appsv1.StatefulSet:
			err = sts.Add(o)
		case *appsv1.Deployment:
			err = deploys.Add(o)
		case *corev1.Pod:
			err = pods.Add(o)
		case *corev1.PersistentVolumeClaim:
			err = pvcs.Add(o)
		case *corev1.ConfigMap:
			configMaps[o.Namespace+"/"+o.Name] = true
		default:
			t.Fatalf("newListers: unexpected object %T", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return Listers{
		StatefulSets: appslisters.NewStatefulSetLister(sts),
		Deployments:  appslisters.NewDeploymentLister(deploys),
		Pods:         corelisters.NewPodLister(pods),
		PVCs:         corelisters.NewPersistentVolumeClaimLister(pvcs),
		ConfigMapExists: func(namespace, name string) (bool, error) {
			return configMaps[namespace+"/"+name], nil
		},
	}
}

// nodeContainers are a CITA-Cloud node's six microservices, all mounting
// the data volume the same way.
func nodeContainers(mount corev1.VolumeMount, cryptoImage, consensusImage string) []corev1.Container {
	return []corev1.Container{
		{Name: "network", Image: "citacloud/network_zenoh:v6.7.0", VolumeMounts: []corev1.VolumeMount{mount}},
		{Name: "consensus", Image: consensusImage, VolumeMounts: []corev1.VolumeMount{mount}},
		{Name: "executor", Image: "citacloud/executor_evm:v6.7.0", VolumeMounts: []corev1.VolumeMount{mount}},
		{Name: "storage", Image: "citacloud/storage_opendal:v6.7.0", VolumeMounts: []corev1.VolumeMount{mount}},
		{Name: "controller", Image: "citacloud/controller_hsm:v6.7.0", VolumeMounts: []corev1.VolumeMount{mount}},
		{Name: "crypto", Image: cryptoImage, VolumeMounts: []corev1.VolumeMount{mount}},
	}
}

// dataPVC is a bound claim whose capacity equals its request.
func dataPVC(name, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, ResourceVersion: "1"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To("local-path"),
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
	}
}

// cloudConfigSTS is what cloud-config deploys for one node: a StatefulSet
// named after it with a datadir claim template and a node-account volume.
func cloudConfigSTS(name string) *appsv1.StatefulSet {
	labels := map[string]string{"app.kubernetes.io/name": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, ResourceVersion: "7", UID: types.UID("uid-sts-" + name)},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: nodeContainers(corev1.VolumeMount{Name: DataVolume, MountPath: "/data"},
						"citacloud/kms_sm:v6.6.0", "citacloud/consensus_overlord:v6.6.0"),
					Volumes: []corev1.Volume{
						{Name: AccountVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name + "-account"}}}},
						{Name: "node-config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name + "-config"}}}},
					},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: DataVolume}}},
		},
	}
}

// helmSTS is what the helm chart deploys: one StatefulSet per chain whose
// pods are the nodes, all sharing one datadir PVC at subPathExpr $(POD_NAME).
func helmSTS(chain string, replicas int32) *appsv1.StatefulSet {
	labels := map[string]string{"app.kubernetes.io/instance": chain}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: chain, Namespace: ns, ResourceVersion: "3", UID: types.UID("uid-sts-" + chain)},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: nodeContainers(corev1.VolumeMount{Name: DataVolume, MountPath: "/data", SubPathExpr: "$(POD_NAME)"},
						"registry.local:5000/citacloud/crypto_eth:v6.7.0", "registry.local:5000/citacloud/consensus_raft@sha256:0123456789abcdef"),
					Volumes: []corev1.Volume{{Name: DataVolume, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: chain + "-data"}}}},
				},
			},
		},
	}
}

// pythonDeployment is what the python deployer creates: a Deployment per
// node labelled chain_name/node_name, its datadir PVC mounted at subPath
// <node>.
func pythonDeployment(chain, name string) *appsv1.Deployment {
	labels := map[string]string{PythonChainLabel: chain, PythonNodeLabel: name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, ResourceVersion: "5", UID: types.UID("uid-deploy-" + name)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: nodeContainers(corev1.VolumeMount{Name: DataVolume, MountPath: "/data", SubPath: name},
						"citacloud/kms_eth:v6.6.0", "citacloud/consensus_bft:v6.6.0"),
					Volumes: []corev1.Volume{{Name: DataVolume, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: chain + "-pvc"}}}},
				},
			},
		},
	}
}

func nodePod(name string, labels map[string]string, machine string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, UID: types.UID("uid-pod-" + name), ResourceVersion: "1"},
		Spec:       corev1.PodSpec{NodeName: machine},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// helmPods are the pods of a helm chain, each on its own machine.
func helmPods(chain string, replicas int) []runtime.Object {
	var out []runtime.Object
	for i := range replicas {
		out = append(out, nodePod(fmt.Sprintf("%s-%d", chain, i), map[string]string{"app.kubernetes.io/instance": chain}, fmt.Sprintf("machine-%d", i)))
	}
	return out
}

func cm(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
}

// invalidReason is the reason of an *InvalidError, or "" for any other error.
func invalidReason(err error) string {
	var inv *InvalidError
	if errors.As(err, &inv) {
		return inv.Reason
	}
	return ""
}

// errPVCLister fails every read, as a broken cache would.
type errPVCLister struct {
	corelisters.PersistentVolumeClaimLister
}

func (errPVCLister) PersistentVolumeClaims(string) corelisters.PersistentVolumeClaimNamespaceLister {
	return errPVCNamespaceLister{}
}

type errPVCNamespaceLister struct {
	corelisters.PersistentVolumeClaimNamespaceLister
}

func (errPVCNamespaceLister) Get(string) (*corev1.PersistentVolumeClaim, error) {
	return nil, errCache
}

var errCache = errors.New("cache unavailable")
