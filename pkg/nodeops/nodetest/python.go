package nodetest

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

func python(chain, node string, opts []Option) *settings {
	return apply(opts, Size("20Gi"), Claim(chain+"-pvc"), SubPath(node))
}

func pythonLabels(chain, node string) map[string]string {
	return map[string]string{PythonChainLabel: chain, PythonNodeLabel: node}
}

// PythonDeployment is what the python tool deploys for a node: a
// Deployment named after it, labelled chain_name/node_name (and so are its
// pods), mounting the chain's claim <chain>-pvc at subPath <node>.
func PythonDeployment(chain, node string, opts ...Option) *appsv1.Deployment {
	s := python(chain, node, opts)
	return &appsv1.Deployment{
		ObjectMeta: s.meta(node, pythonLabels(chain, node), "uid-deploy-"+node),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(s.replicas),
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: pythonLabels(chain, node)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: pythonLabels(chain, node)},
				Spec: corev1.PodSpec{
					Containers: s.containers(),
					Volumes:    []corev1.Volume{claimVolume(s.claim)},
				},
			},
		},
	}
}

// PythonPVC is the chain's data claim, <chain>-pvc (or the Claim).
func PythonPVC(chain, node string, opts ...Option) *corev1.PersistentVolumeClaim {
	s := python(chain, node, opts)
	return s.pvc(s.claim)
}

// PythonPod is a pod of the node's ReplicaSet <node>-<PodTemplateHash>:
// <node>-<PodTemplateHash>-<suffix>.
func PythonPod(chain, node, suffix string, opts ...Option) *corev1.Pod {
	labels := pythonLabels(chain, node)
	labels[appsv1.DefaultDeploymentUniqueLabelKey] = PodTemplateHash
	rs := node + "-" + PodTemplateHash
	return python(chain, node, opts).pod(rs+"-"+suffix, labels, "ReplicaSet", rs, "uid-rs-"+rs)
}

// PythonNode is a python node in the cluster: its Deployment, its chain's
// data claim and, while it runs, its pod <node>-<PodTemplateHash>-abcde.
func PythonNode(chain, node string, opts ...Option) []runtime.Object {
	objs := []runtime.Object{PythonDeployment(chain, node, opts...), PythonPVC(chain, node, opts...)}
	if apply(opts).replicas > 0 {
		objs = append(objs, PythonPod(chain, node, "abcde", opts...))
	}
	return objs
}
