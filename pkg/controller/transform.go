package controller

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TrimForCache is the informers' transform: managedFields go from every
// object, and pods keep only what the controller reads (labels, owner, the
// machine they run on, phase, conditions and container states), since a
// namespace of blockchain nodes holds many large pods.
func TrimForCache(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	pod.Annotations = nil
	pod.Spec = corev1.PodSpec{NodeName: pod.Spec.NodeName}
	pod.Status = corev1.PodStatus{
		Phase:             pod.Status.Phase,
		Conditions:        pod.Status.Conditions,
		ContainerStatuses: pod.Status.ContainerStatuses,
	}
	return pod, nil
}
