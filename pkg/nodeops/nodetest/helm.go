package nodetest

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

func helm(chain string, opts []Option) *settings {
	return apply(opts, Size("50Gi"), Claim(chain+"-data"), SubPathExpr("$(POD_NAME)"))
}

func helmLabels(chain string) map[string]string {
	return map[string]string{HelmChainLabel: chain}
}

// HelmStatefulSet is what the helm chart deploys for a chain of replicas
// nodes: one StatefulSet named after the chain whose pods <chain>-<i> are
// the nodes, all mounting one claim (<chain>-data) at subPathExpr
// $(POD_NAME).
func HelmStatefulSet(chain string, replicas int32, opts ...Option) *appsv1.StatefulSet {
	s := helm(chain, append([]Option{Replicas(replicas)}, opts...))
	return &appsv1.StatefulSet{
		ObjectMeta: s.meta(chain, helmLabels(chain), "uid-sts-"+chain),
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(s.replicas),
			ServiceName:         chain + "-headless-service",
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: helmLabels(chain)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: helmLabels(chain)},
				Spec: corev1.PodSpec{
					Containers: s.containers(),
					Volumes:    []corev1.Volume{claimVolume(s.claim)},
				},
			},
			PersistentVolumeClaimRetentionPolicy: s.retention,
		},
	}
}

// HelmPVC is the chain's one data claim, <chain>-data (or the Claim).
func HelmPVC(chain string, opts ...Option) *corev1.PersistentVolumeClaim {
	s := helm(chain, opts)
	return s.pvc(s.claim)
}

// HelmPod is node <chain>-<ordinal>, on machine-<ordinal> unless a Machine
// is given.
func HelmPod(chain string, ordinal int, opts ...Option) *corev1.Pod {
	s := helm(chain, append([]Option{Machine(fmt.Sprintf("machine-%d", ordinal))}, opts...))
	return s.pod(fmt.Sprintf("%s-%d", chain, ordinal), helmLabels(chain), "StatefulSet", chain, "uid-sts-"+chain)
}

// HelmPods are the pods of a chain of replicas nodes.
func HelmPods(chain string, replicas int, opts ...Option) []runtime.Object {
	var out []runtime.Object
	for i := range replicas {
		out = append(out, HelmPod(chain, i, opts...))
	}
	return out
}

// HelmChain is a helm chain in the cluster: its StatefulSet, its data
// claim and the pods of its replicas.
func HelmChain(chain string, replicas int32, opts ...Option) []runtime.Object {
	sts := HelmStatefulSet(chain, replicas, opts...)
	objs := []runtime.Object{sts, HelmPVC(chain, opts...)}
	return append(objs, HelmPods(chain, int(*sts.Spec.Replicas), opts...)...)
}
